"""When Clay's table webhook misbehaves: 429s, 5xx, timeouts, refusals, a broken target."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import WS
from tests.e2e.harness import Loop, Sim, request, settle, unique_linkedin, wait_status
from tests.support.helpers import eventually, unique_email

MakeWs = Callable[..., Awaitable[WS]]


async def test_a_429_storm_costs_the_leads_nothing(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """Every row answered 429 waits for Retry-After and goes out; no attempt is counted."""
    ws = await make_ws()
    api = loop.api(ws)
    await api.connect(sim, "phone")
    sim.fault(status=429, count=8)
    leads = [await api.lead(linkedin_url=unique_linkedin()) for _ in range(4)]
    await settle(engine, ws, sim)

    stats = sim.stats()
    assert stats["rejected"] == {"429": 8}
    assert sorted(r["lead_id"] for r in sim.rows()) == sorted(lead["id"] for lead in leads)
    for lead in leads:
        got = await api.request(lead["id"], "phone")
        assert got["attempts"] == 1, got
        req = await request(engine, got["request_id"])
        assert req.send_count == 1


async def test_a_5xx_burst_is_retried_with_backoff(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """Two 503s, then Clay accepts: the row goes out on the third attempt."""
    ws = await make_ws()
    api = loop.api(ws)
    await api.connect(sim, "phone")
    sim.fault(status=503, count=2)
    lead = await api.lead(linkedin_url=unique_linkedin())
    await settle(engine, ws, sim)

    assert sim.stats()["rejected"] == {"503": 2}
    (row,) = sim.rows()
    got = await api.request(lead["id"], "phone")
    assert row["request_id"] == got["request_id"]
    assert got["attempts"] == 3
    assert (await request(engine, got["request_id"])).send_count == 1


async def test_persistent_5xx_fails_the_lead_after_max_send_attempts(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """A row that Clay answers 500 every time ends failed with send_failed (max attempts 3)."""
    ws = await make_ws()
    api = loop.api(ws)
    await api.connect(sim, "phone")
    sim.fault(status=500, count=50)
    lead = await api.lead(linkedin_url=unique_linkedin())
    got = await wait_status(api, lead["id"], "phone", "failed", "send_failed")

    assert got["attempts"] == loop.settings.max_send_attempts == 3
    assert sim.stats()["rejected"] == {"500": 3}
    assert sim.rows() == []
    req = await request(engine, got["request_id"])
    assert req.send_count == 0
    assert req.last_error.startswith("500")
    assert (await api.get_lead(lead["id"]))["enrichment_status"] == "failed"


async def test_a_send_timeout_is_retried(
    start_loop: Callable[..., Awaitable[Loop]], sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """Clay answering slower than send_timeout counts as a retryable failure; the retry lands."""
    loop = await start_loop(send_timeout_seconds=0.5)
    ws = await make_ws()
    api = loop.api(ws)
    await api.connect(sim, "phone")
    sim.fault(delay_s=1.5, status=503, count=1)
    lead = await api.lead(email=unique_email("slow+found"), linkedin_url=unique_linkedin())
    got = await wait_status(api, lead["id"], "phone", "enriched")

    assert got["attempts"] == 2
    assert [r["request_id"] for r in sim.rows()] == [got["request_id"]]

    # The timed-out send may have reached Clay: it is counted as a possible send. (The
    # callback can land before the worker records the second send: wait for that.)
    async def both_counted() -> bool:
        return (await request(engine, got["request_id"])).send_count == 2

    await eventually(both_counted)


async def test_a_400_fails_only_that_lead(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """Clay refusing one row (400) fails that lead with rejected:400; the target stays active."""
    ws = await make_ws()
    api = loop.api(ws)
    target, _ = await api.connect(sim, "phone")
    sim.fault(status=400, count=1)
    refused = await api.lead(linkedin_url=unique_linkedin())
    got = await wait_status(api, refused["id"], "phone", "failed", "rejected:400")
    assert got["attempts"] == 1
    fine = await api.lead(email=unique_email("fine+found"), linkedin_url=unique_linkedin())
    await wait_status(api, fine["id"], "phone", "enriched")

    assert [r["lead_id"] for r in sim.rows()] == [fine["id"]]
    state = (await api.targets())[target["id"]]
    assert state["state"] == "active"
    assert state["last_error"].startswith("400")
    assert "target_paused" not in await api.alert_codes()


@pytest.mark.parametrize("code", [401, 403, 404, 410])
async def test_a_broken_target_is_paused_and_its_leads_wait(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine, code: int
) -> None:
    """401/403/404/410 pause the target with the reason and alert; leads stay queued; resume."""
    ws = await make_ws()
    api = loop.api(ws)
    target, _ = await api.connect(sim, "phone")
    sim.fault(status=code, count=1)
    leads = [await api.lead(linkedin_url=unique_linkedin())]

    async def paused() -> bool:
        return bool((await api.targets())[target["id"]]["state"] == "paused")

    await eventually(paused)
    leads += [await api.lead(linkedin_url=unique_linkedin()) for _ in range(2)]
    for lead in leads:
        got = await wait_status(api, lead["id"], "phone", "queued", "target_paused")
        assert got["attempts"] == 0  # the lead is not to blame
    shown = (await api.targets())[target["id"]]
    assert f"Clay answered {code}" in shown["paused_reason"]
    alerts = [a for a in await api.alerts() if a["code"] == "target_paused"]
    assert [a["target_id"] for a in alerts] == [target["id"]]
    assert sim.rows() == []

    await api.resume(target["id"])
    await settle(engine, ws, sim)
    assert sorted(r["lead_id"] for r in sim.rows()) == sorted(lead["id"] for lead in leads)
    assert "target_paused" not in await api.alert_codes()


async def test_a_wrong_auth_token_pauses_the_target(
    loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """A real 401 from the table (wrong x-clay-webhook-auth) pauses the target."""
    ws = await make_ws()
    api = loop.api(ws)
    table = sim.table("phone", auth_token="the-right-token-123456")
    target = await api.add_target("phone", sim.webhook(table), auth_token="a-wrong-token-123456")
    lead = await api.lead(linkedin_url=unique_linkedin())
    await wait_status(api, lead["id"], "phone", "queued", "target_paused")
    shown = (await api.targets())[target["id"]]
    assert shown["state"] == "paused"
    assert "401" in shown["paused_reason"]
    assert "x-clay-webhook-auth" in shown["paused_reason"]
    assert sim.stats()["rejected"] == {"401": 1}
