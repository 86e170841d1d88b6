"""``clayloop worker`` processes: killed mid-send, stopped gracefully, four at once on PostgreSQL.

These tests drive the shared worker-less server (the API and the callback endpoint) and
run the worker as separate ``clayloop worker`` processes against the same database.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from clayloop import models as m
from tests.conftest import WS
from tests.e2e.harness import (
    Api,
    Sim,
    SimProcess,
    WorkerProcess,
    request,
    request_ids,
    settle,
    unique_linkedin,
    usage,
    wait_status,
)
from tests.support.database import backend
from tests.support.helpers import eventually, rows, unique_email

MakeWs = Callable[..., Awaitable[WS]]
Spawn = Callable[..., WorkerProcess]
R = m.enrichment_request


async def mid_send(sim: Sim) -> None:
    """Wait until every injected fault was taken: those sends are now held inside the sim."""

    async def taken() -> bool:
        return await asyncio.to_thread(sim.faults_left) == 0

    await eventually(taken, within=30)


def sends_logged(worker: WorkerProcess) -> int:
    """How many rows a worker process logged as sent."""
    count = 0
    for line in worker.output().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        count += event.get("event") == "send" and event.get("verdict") == "sent"
    return count


async def test_a_killed_workers_row_is_sent_again_after_its_lease_expires(
    spawn_worker: Spawn, client: httpx.AsyncClient, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """SIGKILL mid-send: the lease expires, another worker sends the row; one extra send counted."""
    ws = await make_ws()
    api = Api(client, ws)
    await api.connect(sim, "phone")
    sim.fault(delay_s=6, status=503, count=1)  # the first send hangs, then never lands
    lead = await api.lead(email=unique_email("crash+found"), linkedin_url=unique_linkedin())
    request_id = lead["enrichment"]["phone"]["request_id"]

    # Killed while its send is still waiting for Clay (lease > send timeout, as enforced).
    doomed = spawn_worker(lease_seconds=4, send_timeout_seconds=3)
    await mid_send(sim)
    held = await request(engine, request_id)
    assert held.status == "sending"
    assert held.lease_owner is not None
    assert doomed.kill() != 0

    spawn_worker()
    await wait_status(api, lead["id"], "phone", "enriched", within=30)
    await settle(engine, ws, sim)  # the callback may land before the send is recorded
    req = await request(engine, request_id)
    assert req.send_count == 2  # the lost send may have reached Clay: counted, visible
    assert req.attempts == 2
    assert request_ids(sim.rows()) == [request_id]
    status = await api.status()
    assert status["requests_sent_more_than_once"] == 1
    assert status["rows_sent"] == 2
    assert (await usage(engine, "workspace", ws.id)).extra_sends == 1


async def test_sigterm_finishes_or_releases_what_the_worker_holds(
    spawn_worker: Spawn, client: httpx.AsyncClient, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """A worker stopped mid-send exits cleanly; every row goes out once, none stays 'sending'."""
    ws = await make_ws()
    api = Api(client, ws)
    # A small bucket keeps most leads queued while the first sends hang.
    await api.connect(sim, "phone", rate=4, burst=5)
    sim.fault(delay_s=1.5, count=3)
    leads = [await api.lead(linkedin_url=unique_linkedin()) for _ in range(10)]

    stopping = spawn_worker()
    await mid_send(sim)
    stopping.terminate()
    spawn_worker()
    assert await asyncio.to_thread(stopping.wait, 30) == 0, stopping.output()[-2000:]
    await settle(engine, ws, sim, within=30)

    assert Counter(r["lead_id"] for r in sim.rows()) == Counter(lead["id"] for lead in leads)
    for req in await rows(
        engine, sa.select(R).where(R.c.workspace_id == ws.id, R.c.kind == "phone")
    ):
        assert req.status != "sending"
        assert req.send_count == 1, req
    assert "worker_stopped" in stopping.output()


@pytest.mark.postgres
@pytest.mark.skipif(backend() != "postgresql", reason="several workers need PostgreSQL")
async def test_four_workers_send_every_row_once_within_rate_and_budget(
    spawn_worker: Spawn,
    client: httpx.AsyncClient,
    sim_process: SimProcess,
    make_ws: MakeWs,
    engine: AsyncEngine,
) -> None:
    """150 leads, a daily cap of 100, four workers: 100 rows, each once, and not one 429."""
    ws = await make_ws(daily_cap=100)
    api = Api(client, ws)
    await api.add_target("phone", await asyncio.to_thread(sim_process.table_url, "phone"))
    leads = await asyncio.gather(*(api.lead(linkedin_url=unique_linkedin()) for _ in range(150)))
    workers = [spawn_worker() for _ in range(4)]

    async def decided() -> bool:
        counts = await _status_counts(engine, ws.id)
        if counts.get(("queued", "budget_exhausted"), 0) != 50:
            return False
        if sum(n for (s, _), n in counts.items() if s in ("sending", "sent")):
            return False
        return int((await asyncio.to_thread(sim_process.stats))["pending_callbacks"]) == 0

    await eventually(decided, within=90, interval=0.2)
    sim_rows = await asyncio.to_thread(sim_process.rows)
    stats = await asyncio.to_thread(sim_process.stats)
    assert len(sim_rows) == 100
    assert len(set(request_ids(sim_rows))) == 100  # no row twice
    assert stats["rejected"] == {}  # the rate limit held across workers: zero 429s
    assert (await usage(engine, "workspace", ws.id)).rows == 100
    status = await api.status()
    assert (status["rows_sent"], status["requests_sent_more_than_once"]) == (100, 0)
    assert {r["lead_id"] for r in sim_rows} <= {lead["id"] for lead in leads}
    # The work was shared, not done by one worker while the others idled.
    assert sum(1 for w in workers if sends_logged(w) > 0) >= 2


async def _status_counts(engine: AsyncEngine, workspace_id: str) -> dict[tuple[str, Any], int]:
    found = await rows(
        engine,
        sa.select(R.c.status, R.c.reason, sa.func.count())
        .where(R.c.workspace_id == workspace_id)
        .group_by(R.c.status, R.c.reason),
    )
    return {(s, r): n for s, r, n in found}
