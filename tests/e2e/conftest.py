"""End-to-end fixtures: the Clay simulator, clayloop with its worker, worker processes.

The database is the session's; every test makes its own workspace and targets. A test
runs at most one worker-running app, stopped when the test ends, and when it ends its
targets are paused and its open requests cancelled, so no later worker sends them.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from clayloop import models as m
from clayloop.app import create_app
from clayloop.clay.simulator import ClaySimulator, SimConfig
from clayloop.kit.live import LiveServer
from tests.conftest import SECRET, WS, make_settings, new_workspace
from tests.e2e.harness import (
    Loop,
    Sim,
    SimProcess,
    WorkerProcess,
    start_sim_process,
    start_worker,
    worker_env,
)

# What every end-to-end app runs with: a fast worker and tiny backoff. The lease and the send
# timeout stay generous: on a busy 2-core machine a send can take a second, and a lease that
# expires mid-send (or a timeout) is a legitimate resend, which would blur the assertions.
LOOP_SETTINGS: dict[str, Any] = {
    "worker_poll_seconds": 0.05,
    "sweep_interval_seconds": 0.2,
    "monitor_interval_seconds": 0.2,
    "lease_seconds": 10,
    "send_timeout_seconds": 5,
    "backoff_base_seconds": 0.05,
    "max_send_attempts": 3,
}


async def retire_targets(engine: AsyncEngine) -> None:
    """Pause every target and cancel the open requests of workspaces that have targets."""
    r = m.enrichment_request
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(m.clay_target)
            .where(m.clay_target.c.state == "active")
            .values(state="paused", paused_reason="end-to-end test finished")
        )
        await conn.execute(
            sa.update(r)
            .where(
                r.c.status.in_(("queued", "sending", "sent")),
                r.c.workspace_id.in_(sa.select(m.clay_target.c.workspace_id)),
            )
            .values(status="cancelled", lease_until=None, lease_owner=None)
        )


@pytest.fixture
def sim() -> Iterator[Sim]:
    """A fresh Clay simulator on a real port, calling back with the test callback secret."""
    simulator = ClaySimulator(SimConfig(callback_secret=SECRET, callback_delay_s=0.05))
    server = LiveServer(simulator.build_app()).start()
    yield Sim(simulator, server.url)
    server.stop()


@pytest.fixture
async def start_loop(
    database_url: str, engine: AsyncEngine
) -> AsyncIterator[Callable[..., Awaitable[Loop]]]:
    """Start clayloop with its worker: ``await start_loop(**setting_overrides)``, once a test."""
    started: list[Loop] = []

    async def start(**overrides: Any) -> Loop:
        assert not started, "one worker-running app per test"
        settings = make_settings(database_url, **{**LOOP_SETTINGS, **overrides})
        # Bind first: the public URL (written into every row as callback_url) is our own.
        server = LiveServer(create_app(settings, run_worker=True))
        settings.public_url = server.url
        await asyncio.to_thread(server.start)
        loop = Loop(server, settings, httpx.AsyncClient(base_url=server.url, timeout=30))
        started.append(loop)
        return loop

    yield start
    for loop in started:
        await loop.http.aclose()
        await asyncio.to_thread(loop.server.stop)
    await retire_targets(engine)


@pytest.fixture
async def loop(start_loop: Callable[..., Awaitable[Loop]]) -> Loop:
    """clayloop with its worker, default end-to-end settings."""
    return await start_loop()


@pytest.fixture
def make_ws(engine: AsyncEngine) -> Callable[..., Awaitable[WS]]:
    """A new workspace; sends all leads unless ``eligibility`` says otherwise."""

    async def make(**settings: Any) -> WS:
        settings.setdefault("eligibility", "all_leads")
        return await new_workspace(engine, **settings)

    return make


@pytest.fixture
async def spawn_worker(
    database_url: str, server: LiveServer, engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[Callable[..., WorkerProcess]]:
    """Start ``clayloop worker`` processes calling back to the shared (worker-less) server."""
    procs: list[WorkerProcess] = []

    def spawn(**settings: Any) -> WorkerProcess:
        env = worker_env(database_url, server.url, **settings)
        proc = start_worker(env, tmp_path / f"worker-{len(procs) + 1}.log", tmp_path)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.proc.poll() is None:
            proc.kill()
    await retire_targets(engine)


@pytest.fixture
def sim_process(tmp_path: Path) -> Iterator[SimProcess]:
    """The Clay simulator in a process of its own (one ``phone`` table, no auth token)."""
    proc = start_sim_process(tmp_path / "sim.log", tmp_path)
    yield proc
    proc.proc.terminate()
    try:
        proc.proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.proc.kill()
        proc.proc.wait(15)
