"""The basic loop over real HTTP: a lead is created, its phone request is called back."""

from __future__ import annotations

from tests.conftest import SECRET
from tests.support.helpers import create_lead, mark_sent, token_for


async def test_a_callback_with_success_true_and_no_status_fills_the_phone(client, ws, engine):
    lead = await create_lead(client, ws, email="Jane@Acme.com", first_name="Jane")
    assert lead["email"] == "jane@acme.com"
    assert lead["enrichment_status"] == "pending"
    request_id = lead["enrichment"]["phone"]["request_id"]
    await mark_sent(engine, request_id)
    answer = await client.post(
        "/api/webhooks/clay",
        json={
            "request_id": request_id,
            "lead_id": lead["id"],
            "callback_token": token_for(request_id),
            "success": True,
            "phone": "+1 415 555 0132",
        },
        headers={"x-clay-signature": SECRET},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "result": "applied",
        "lead_id": lead["id"],
        "kind": "phone",
        "status": "enriched",
    }
    after = (await client.get(f"/api/v1/leads/{lead['id']}", headers=ws.headers)).json()
    assert after["phone"] == "+14155550132"
    assert after["enrichment"]["phone"]["status"] == "enriched"
    assert after["enrichment_status"] == "pending"  # the linkedin request is still open
