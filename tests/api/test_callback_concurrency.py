"""Callbacks arriving at the same moment apply exactly once, on SQLite and on PostgreSQL.

Clay retries, and a table with two HTTP API actions may fire both at once; the apply runs
in one transaction holding the lead's lock, so the second caller sees the first's result.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import SECRET
from tests.support.helpers import (
    journal_mark,
    journal_since,
    lead_events,
    request_row,
    sent_lead,
    token_for,
)

CALLBACK = "/api/webhooks/clay"
AUTH = {"x-clay-signature": SECRET}
PHONE = "+1 415 555 0132"
PROFILE = "https://www.linkedin.com/in/grace-hopper"
CONCURRENT = 25


def body(lead: dict[str, Any], kind: str, **fields: Any) -> dict[str, Any]:
    request_id = lead["enrichment"][kind]["request_id"]
    return {
        "request_id": request_id,
        "lead_id": lead["id"],
        "enrichment_type": kind,
        "callback_token": token_for(request_id),
        **fields,
    }


async def at_once(server_url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """POST every body at the same moment, each on its own connection."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server_url, limits=limits, timeout=60) as http:
        start = asyncio.Event()

        async def one(item: dict[str, Any]) -> httpx.Response:
            await start.wait()
            return await http.post(CALLBACK, json=item, headers=AUTH)

        tasks = [asyncio.create_task(one(item)) for item in bodies]
        await asyncio.sleep(0.05)
        start.set()
        return list(await asyncio.gather(*tasks))


async def test_identical_callbacks_at_once_apply_exactly_once(client, ws, engine, server):
    lead = await sent_lead(client, ws, engine)
    request_id = lead["enrichment"]["phone"]["request_id"]
    mark = await journal_mark(engine)

    answers = await at_once(
        server.url, [body(lead, "phone", success=True, phone=PHONE)] * CONCURRENT
    )

    assert [a.status_code for a in answers] == [200] * CONCURRENT, [a.text for a in answers]
    results = Counter(a.json()["result"] for a in answers)
    assert results == {"applied": 1, "duplicate": CONCURRENT - 1}
    assert {a.json()["status"] for a in answers} == {"enriched"}

    events = await lead_events(engine, lead["id"])
    assert len([e for e in events if e.event == "field_set" and e.field == "phone"]) == 1
    assert len([e for e in events if e.event == "enrichment_enriched"]) == 1
    assert not [e for e in events if e.event == "conflict"]
    assert (await request_row(engine, request_id)).status == "enriched"
    journal = await journal_since(engine, mark)
    assert Counter(j.outcome for j in journal) == {"applied": 1, "duplicate": CONCURRENT - 1}


async def test_identical_failures_at_once_are_recorded_once(client, ws, engine, server):
    lead = await sent_lead(client, ws, engine)
    answers = await at_once(
        server.url, [body(lead, "linkedin", status="error", error="quota")] * CONCURRENT
    )
    results = Counter(a.json()["result"] for a in answers)
    assert results == {"applied": 1, "duplicate": CONCURRENT - 1}
    events = await lead_events(engine, lead["id"])
    assert len([e for e in events if e.event == "enrichment_failed"]) == 1


@pytest.mark.parametrize(
    ("linkedin", "phone", "rollup"),
    [
        ({"linkedin_url": PROFILE}, {"phone": PHONE}, "enriched"),
        ({"status": "not_found"}, {"status": "not_found"}, "not_found"),
        ({"status": "failed", "error": "x"}, {"status": "not_found"}, "failed"),
        ({"status": "not_found"}, {"phone": PHONE}, "enriched"),
    ],
)
async def test_both_kinds_at_once_end_with_the_right_rollup(
    client, ws, engine, server, linkedin, phone, rollup
):
    # Repeated a few times: a lost update shows up as a lead still "pending".
    for _ in range(5):
        lead = await sent_lead(client, ws, engine)
        answers = await at_once(
            server.url, [body(lead, "linkedin", **linkedin), body(lead, "phone", **phone)]
        )
        assert [a.json()["result"] for a in answers] == ["applied", "applied"]
        after = (await client.get(f"/api/v1/leads/{lead['id']}", headers=ws.headers)).json()
        assert after["enrichment_status"] == rollup
        if "linkedin_url" in linkedin:
            assert after["linkedin_url"] == PROFILE
        if "phone" in phone:
            assert after["phone"] == "+14155550132"


async def test_a_success_racing_a_miss_never_ends_downgraded(client, ws, engine, server):
    for _ in range(5):
        lead = await sent_lead(client, ws, engine)
        bodies = [body(lead, "phone", status="not_found")] * 5 + [
            body(lead, "phone", success=True, phone=PHONE)
        ] * 5
        answers = await at_once(server.url, bodies)
        assert all(a.status_code == 200 for a in answers)
        after = (await client.get(f"/api/v1/leads/{lead['id']}", headers=ws.headers)).json()
        assert after["enrichment"]["phone"]["status"] == "enriched"
        assert after["phone"] == "+14155550132"
        events = await lead_events(engine, lead["id"])
        assert len([e for e in events if e.event == "field_set"]) == 1
