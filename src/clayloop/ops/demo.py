"""``clayloop demo``: the whole loop on one machine, on a throwaway SQLite database.

It starts the service (with its worker) and the Clay simulator on loopback ports,
creates a workspace with one LinkedIn and one phone target, loads sample leads
through the HTTP API, waits for the loop to settle and summarizes what happened.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from clayloop.clay.simulator import ClaySimulator, SimConfig
from clayloop.config import Settings
from clayloop.kit.db import create_engine
from clayloop.kit.live import LiveServer
from clayloop.kit.migrate import upgrade_async
from clayloop.workspaces.service import add_callback_secret, create_workspace

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
COMPANIES = ["Analytical Ltd", "Cobol Inc", "Enigma GmbH", "Semaphore BV", "CLU Labs"]
SENTIMENTS = ["Interested", "Meeting Requested", "Call Requested", "Not Interested", "Interested"]


def sample_leads(count: int) -> list[dict[str, Any]]:
    """Realistic leads, with a few that policy keeps back (and says why)."""
    leads: list[dict[str, Any]] = []
    for i in range(count):
        first, last = FIRST[i % len(FIRST)], LAST[i % len(LAST)]
        lead: dict[str, Any] = {
            "email": f"{first.lower()}.{last.lower()}{i}@example.com",
            "first_name": first,
            "last_name": last,
            "company_name": COMPANIES[i % len(COMPANIES)],
            "sentiment": SENTIMENTS[i % len(SENTIMENTS)],
        }
        if i % 11 == 3:
            lead["opted_out"] = True
        if i % 13 == 5:
            lead["first_name"] = None  # the phone table requires a first name
        if i % 17 == 7:
            del lead["email"]
            lead["phone"] = "+1 415 555 01" + f"{i % 100:02d}"
        leads.append(lead)
    return leads


async def run_demo(count: int, settle_seconds: float, keep: Path | None) -> dict[str, Any]:
    """Run the loop over ``count`` sample leads; returns the status summary."""
    from clayloop.app import create_app

    workdir = keep or Path(tempfile.mkdtemp(prefix="clayloop-demo-"))
    url = f"sqlite:///{workdir / 'demo.db'}"
    await upgrade_async(url)
    secret = secrets.token_urlsafe(24)
    sim = ClaySimulator(SimConfig(callback_secret=secret, callback_delay_s=0.3, seed=7))
    sim_server = LiveServer(sim.build_app())
    settings = Settings(
        _env_file=None,
        database_url=url,
        log_format="json",
        log_level="ERROR",
        worker_poll_seconds=0.05,
        sweep_interval_seconds=0.5,
        monitor_interval_seconds=1.0,
    )
    engine = create_engine(settings)
    async with engine.begin() as conn:
        workspace_id, api_key = await create_workspace(conn, "demo")
        await add_callback_secret(conn, workspace_id, secret)
    await engine.dispose()
    app_server = LiveServer(create_app(settings, run_worker=True))
    settings.public_url = app_server.url
    sim_server.start()
    app_server.start()
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        async with httpx.AsyncClient(base_url=app_server.url, headers=headers) as http:
            for kind, required in (("linkedin", None), ("phone", ["email", "first_name"])):
                table = sim.add_table(f"{kind} table", auth_token=secrets.token_urlsafe(12))
                answer = await http.post(
                    "/api/v1/targets",
                    json={
                        "kind": kind,
                        "url": table.url(sim_server.url),
                        "auth_token": table.auth_token,
                        "required_fields": required,
                    },
                )
                answer.raise_for_status()
            for lead in sample_leads(count):
                (await http.post("/api/v1/leads", json=lead)).raise_for_status()
            deadline = time.monotonic() + settle_seconds
            while True:
                summary: dict[str, Any] = (await http.get("/api/v1/status")).json()
                settled = summary["leads"].get("pending", 0) == 0
                if settled or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
    finally:
        app_server.stop()
        sim_server.stop()
    summary["simulator"] = sim.stats()
    summary["database"] = url
    return summary
