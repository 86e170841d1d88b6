"""Why a lead was not sent: every reason is on the request, and a changed lead is looked at again.

Each test proves "never sent" the same way: a lead that is eligible goes through the same
worker after the ineligible ones, and once it is back from the simulator, the simulator
has still never seen the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import WS
from tests.e2e.harness import Api, Loop, Sim, settle, unique_linkedin, wait_status
from tests.support.helpers import eventually, unique_email, unique_phone

MakeWs = Callable[..., Awaitable[WS]]


def sent_leads(sim: Sim) -> set[str]:
    """Leads the simulator received a row for."""
    return {r["lead_id"] for r in sim.rows()}


async def control_lead(api: Api, **fields: Any) -> dict[str, Any]:
    """An eligible lead that needs a phone, and the proof that the worker got past it."""
    lead = await api.lead(
        email=unique_email("control+found"), linkedin_url=unique_linkedin(), **fields
    )
    await wait_status(api, lead["id"], "phone", "enriched")
    return lead


async def reasons(api: Api, lead_id: str) -> dict[str, tuple[str, str | None]]:
    """(status, reason) of the lead's latest request of each kind."""
    lead = await api.get_lead(lead_id)
    return {kind: (r["status"], r["reason"]) for kind, r in lead["enrichment"].items()}


async def test_lead_level_reasons_are_recorded_and_never_sent(
    loop: Loop, sim: Sim, make_ws: MakeWs
) -> None:
    """not_positive, opted_out, has_value and no_email land on the requests; nothing goes out."""
    ws = await make_ws(eligibility="positive_only")
    api = loop.api(ws)
    await api.connect(sim, "linkedin")
    await api.connect(sim, "phone")
    cold = await api.lead(sentiment="Not Interested")
    untagged = await api.lead()
    opted = await api.lead(sentiment="Interested", opted_out=True)
    known = await api.lead(sentiment="Interested", linkedin_url=unique_linkedin())
    sms_only = await api.lead(email=None, phone=unique_phone(), sentiment="Interested")
    control = await control_lead(api, sentiment="Meeting Requested")

    assert await reasons(api, cold["id"]) == {
        "linkedin": ("skipped", "not_positive"),
        "phone": ("skipped", "not_positive"),
    }
    assert await reasons(api, untagged["id"]) == {
        "linkedin": ("skipped", "not_positive"),
        "phone": ("skipped", "not_positive"),
    }
    assert await reasons(api, opted["id"]) == {
        "linkedin": ("skipped", "opted_out"),
        "phone": ("skipped", "opted_out"),
    }
    assert (await reasons(api, known["id"]))["linkedin"] == ("skipped", "has_value")
    assert await reasons(api, sms_only["id"]) == {
        "linkedin": ("skipped", "no_email"),
        "phone": ("skipped", "no_email"),
    }
    assert (await api.get_lead(sms_only["id"]))["enrichment_status"] == "not_needed"
    # Only the control lead's rows and the phone row of the lead with a LinkedIn URL went out.
    sent = {(r["lead_id"], r["enrichment_type"]) for r in sim.rows()}
    assert sent <= {(known["id"], "phone"), (control["id"], "phone"), (control["id"], "linkedin")}
    assert (control["id"], "phone") in sent


async def test_a_lead_whose_sentiment_turns_positive_is_sent(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """Re-posting a lead with a positive sentiment opens a request and the row goes out."""
    ws = await make_ws(eligibility="positive_only")
    api = loop.api(ws)
    await api.connect(sim, "phone")
    lead = await api.lead(sentiment="Not interested", linkedin_url=unique_linkedin())
    assert (await api.request(lead["id"], "phone"))["reason"] == "not_positive"
    await control_lead(api, sentiment="Interested")
    assert lead["id"] not in sent_leads(sim)

    again = await api.lead(email=lead["email"], sentiment="interested ")  # case, spaces ignored
    assert again["enrichment"]["phone"]["status"] == "queued"
    await settle(engine, ws, sim)
    assert [r["lead_id"] for r in sim.rows()].count(lead["id"]) == 1


async def test_a_known_miss_is_not_paid_for_twice_within_the_cooldown(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """A lead that came back not_found is not sent again when it changes within the cooldown.

    The re-evaluation records a skipped request with reason ``cooldown``; the lead's
    rollup still reports the miss it is cooling down from.
    """
    ws = await make_ws()
    api = loop.api(ws)
    await api.connect(sim, "phone")
    lead = await api.lead(email=unique_email("miss+notfound"), linkedin_url=unique_linkedin())
    missed = await wait_status(api, lead["id"], "phone", "not_found")

    await api.lead(email=lead["email"], title="VP Sales")  # a change: re-evaluated
    await control_lead(api)
    assert [r["lead_id"] for r in sim.rows()].count(lead["id"]) == 1
    again = await api.get_lead(lead["id"])
    assert again["enrichment"]["phone"]["request_id"] != missed["request_id"]
    assert again["enrichment"]["phone"]["status"] == "skipped"
    assert again["enrichment"]["phone"]["reason"] == "cooldown"
    assert again["enrichment_status"] == "not_found"


async def test_a_row_missing_a_required_field_is_skipped_until_the_field_is_filled(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """A target requiring first_name never receives a row without one."""
    ws = await make_ws()
    api = loop.api(ws)
    await api.connect(sim, "phone", required_fields=["first_name"])
    lead = await api.lead(linkedin_url=unique_linkedin(), first_name="  ")
    await wait_status(api, lead["id"], "phone", "skipped", "missing_required:first_name")
    await control_lead(api, first_name="Ada")
    assert lead["id"] not in sent_leads(sim)

    await api.lead(email=lead["email"], first_name="Ada")
    await settle(engine, ws, sim)
    (row,) = [r for r in sim.rows() if r["lead_id"] == lead["id"]]
    assert row["enrichment_type"] == "phone"


async def test_a_lead_without_a_target_waits_with_no_target_until_one_is_added(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """no_target is recorded and alerted; adding the target sends the lead at once."""
    ws = await make_ws()
    api = loop.api(ws)
    lead = await api.lead(linkedin_url=unique_linkedin())
    await wait_status(api, lead["id"], "phone", "queued", "no_target")

    async def alerted() -> bool:
        return "leads_held_no_target" in await api.alert_codes()

    await eventually(alerted)
    await api.connect(sim, "phone")
    await settle(engine, ws, sim, within=10)  # no waiting out the hold
    assert sent_leads(sim) == {lead["id"]}

    async def cleared() -> bool:
        return "leads_held_no_target" not in await api.alert_codes()

    await eventually(cleared)


async def test_a_paused_target_holds_its_leads_until_resumed(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """target_paused is recorded and alerted; resuming sends the lead."""
    ws = await make_ws()
    api = loop.api(ws)
    target, _ = await api.connect(sim, "phone")
    assert (await api.pause(target["id"]))["state"] == "paused"
    lead = await api.lead(linkedin_url=unique_linkedin())
    await wait_status(api, lead["id"], "phone", "queued", "target_paused")

    async def alerted() -> bool:
        return "leads_held_target_paused" in await api.alert_codes()

    await eventually(alerted)
    assert sim.rows() == []
    assert (await api.resume(target["id"]))["state"] == "active"
    await settle(engine, ws, sim)
    assert sent_leads(sim) == {lead["id"]}

    async def cleared() -> bool:
        return "leads_held_target_paused" not in await api.alert_codes()

    await eventually(cleared)


async def test_a_spent_budget_holds_leads_with_budget_exhausted(
    loop: Loop, sim: Sim, make_ws: MakeWs
) -> None:
    """A target with a daily cap of 0 sends nothing; its leads wait with budget_exhausted."""
    ws = await make_ws()
    api = loop.api(ws)
    await api.connect(sim, "phone", daily_cap=0)
    leads = [await api.lead(linkedin_url=unique_linkedin()) for _ in range(2)]
    for lead in leads:
        await wait_status(api, lead["id"], "phone", "queued", "budget_exhausted")
    assert sim.rows() == []
