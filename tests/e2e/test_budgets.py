"""Budgets and webhook capacity: caps are never exceeded, and a full webhook hands over."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import WS
from tests.e2e.harness import Api, Loop, Sim, settle, unique_linkedin, usage, wait_status
from tests.support.helpers import eventually, unique_email

MakeWs = Callable[..., Awaitable[WS]]


async def phone_leads(api: Api, n: int, tag: str = "lead") -> list[dict[str, Any]]:
    """``n`` leads that need a phone (and nothing else)."""
    return [
        await api.lead(email=unique_email(tag), linkedin_url=unique_linkedin()) for _ in range(n)
    ]


async def held_by_budget(api: Api, leads: list[dict[str, Any]], sim: Sim) -> list[str]:
    """Wait until every lead was sent or is held with budget_exhausted; return the held ones."""
    held: list[str] = []

    async def decided() -> bool:
        held.clear()
        sent = {r["lead_id"] for r in sim.rows()}
        for lead in leads:
            got = await api.request(lead["id"], "phone")
            if got["status"] == "queued" and got["reason"] == "budget_exhausted":
                held.append(lead["id"])
            elif lead["id"] not in sent or got["status"] in ("queued", "sending", "sent"):
                return False
        return True

    await eventually(decided)
    return held


async def test_a_target_daily_cap_sends_exactly_that_many(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """daily_cap=3 and 5 leads: 3 rows reach Clay, 2 wait with budget_exhausted."""
    ws = await make_ws()
    api = loop.api(ws)
    target, _ = await api.connect(sim, "phone", daily_cap=3)
    leads = await phone_leads(api, 5)
    held = await held_by_budget(api, leads, sim)

    assert len(sim.rows()) == 3
    assert len(held) == 2
    assert not {r["lead_id"] for r in sim.rows()} & set(held)
    assert (await usage(engine, "target", target["id"])).rows == 3
    assert (await api.targets())[target["id"]]["submissions_used"] == 3


async def test_a_workspace_daily_cap_holds_across_kinds(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """A workspace cap of 3 counts the rows of every target together."""
    ws = await make_ws(daily_cap=3)
    api = loop.api(ws)
    await api.connect(sim, "linkedin")
    await api.connect(sim, "phone")
    leads = [await api.lead() for _ in range(3)]  # 6 rows wanted, linkedin and phone

    async def all_decided() -> bool:
        reasons = [
            (r["status"], r["reason"])
            for lead in leads
            for r in (await api.get_lead(lead["id"]))["enrichment"].values()
        ]
        return sum(1 for r in reasons if r == ("queued", "budget_exhausted")) == 3

    await eventually(all_decided)
    await settle_sent(sim, 3)
    assert len(sim.rows()) == 3
    assert (await usage(engine, "workspace", ws.id)).rows == 3


async def settle_sent(sim: Sim, n: int) -> None:
    """Wait until the simulator has called back for ``n`` rows."""

    async def done() -> bool:
        return len(sim.rows()) >= n and sim.sim.pending_callbacks == 0

    await eventually(done)


async def test_a_cost_cap_stops_spending(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """Rows cost 0.4 and the day may cost 1.0: two rows go out, the rest wait."""
    ws = await make_ws(daily_cost_cap=1.0)
    api = loop.api(ws)
    await api.connect(sim, "phone", cost_per_row=0.4)
    leads = await phone_leads(api, 4)
    held = await held_by_budget(api, leads, sim)

    assert len(sim.rows()) == 2
    assert len(held) == 2
    spent = await usage(engine, "workspace", ws.id)
    assert spent.rows == 2
    assert abs(spent.cost - 0.8) < 1e-9


async def test_a_webhook_near_its_limit_alerts_and_the_next_target_takes_over(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """limit=10: at 9 the near-limit alert opens; the 11th row goes to the next target."""
    ws = await make_ws()
    api = loop.api(ws)
    first, first_table = await api.connect(sim, "phone", limit=10)
    second, second_table = await api.connect(sim, "phone", priority=1)
    await phone_leads(api, 9)
    await settle(engine, ws, sim)
    assert len(sim.rows(first_table)) == 9

    async def near() -> bool:
        return "target_near_limit" in await api.alert_codes()

    await eventually(near)
    (alert,) = [a for a in await api.alerts() if a["code"] == "target_near_limit"]
    assert alert["target_id"] == first["id"]

    await phone_leads(api, 3)
    await settle(engine, ws, sim)
    assert len(sim.rows(first_table)) == 10
    assert len(sim.rows(second_table)) == 2
    targets = await api.targets()
    assert targets[first["id"]]["submissions_used"] == 10
    assert targets[second["id"]]["submissions_used"] == 2

    async def exhausted() -> bool:
        return "target_exhausted" in await api.alert_codes()

    await eventually(exhausted)


async def test_clay_refusing_past_its_limit_pauses_the_webhook_and_the_next_takes_over(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """The simulated webhook holds 2 rows; the 403 pauses it and the backup target sends."""
    ws = await make_ws()
    api = loop.api(ws)
    full, full_table = await api.connect(sim, "phone", table=sim.table("phone", limit=2))
    _, backup_table = await api.connect(sim, "phone", priority=1)
    leads = await phone_leads(api, 4, "limit+found")
    await settle(engine, ws, sim)

    assert len(sim.rows(full_table)) == 2
    assert len(sim.rows(backup_table)) == 2
    assert sorted(r["lead_id"] for r in sim.rows()) == sorted(lead["id"] for lead in leads)
    shown = (await api.targets())[full["id"]]
    assert shown["state"] == "paused"
    assert "submission limit" in shown["paused_reason"]
    assert "target_paused" in await api.alert_codes()
    for lead in leads:  # nobody was failed for the webhook's limit
        assert (await api.request(lead["id"], "phone"))["status"] == "enriched"


async def test_budget_exhausted_is_recorded_on_the_request(
    loop: Loop, sim: Sim, make_ws: MakeWs
) -> None:
    """A workspace cap of 0 holds the very first lead with budget_exhausted."""
    ws = await make_ws(daily_cap=0)
    api = loop.api(ws)
    await api.connect(sim, "phone")
    (lead,) = await phone_leads(api, 1)
    await wait_status(api, lead["id"], "phone", "queued", "budget_exhausted")
    assert sim.rows() == []
