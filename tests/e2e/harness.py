"""The end-to-end harness: clayloop (API, callback endpoint, worker) and the Clay simulator.

Both run on real loopback sockets; tests drive clayloop through its HTTP API and CLI and
read what happened from the simulator (``rows()``, ``stats()``), the API and the database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from clayloop import models as m
from clayloop.clay.simulator import ClaySimulator, SimTable
from clayloop.config import Settings
from clayloop.kit.live import LiveServer
from clayloop.leads.normalize import normalize_linkedin_url, normalize_phone
from tests.conftest import SECRET, WS
from tests.support.helpers import TOKEN_KEY, eventually, rows, unique_email

R = m.enrichment_request
OPEN = ("queued", "sending", "sent")
CLAYLOOP = Path(sys.executable).parent / "clayloop"
SIM_TOKEN = "sim-table-token-0123456789"


@dataclass
class Sim:
    """The Clay simulator on a real port."""

    sim: ClaySimulator
    url: str

    def table(
        self,
        name: str = "table",
        *,
        auth_token: str | None = SIM_TOKEN,
        workspace: str = "default",
        limit: int | None = None,
    ) -> SimTable:
        """A new table webhook source."""
        return self.sim.add_table(name, auth_token=auth_token, workspace=workspace, limit=limit)

    def webhook(self, table: SimTable) -> str:
        """The table's webhook URL."""
        return table.url(self.url)

    def configure(self, **changes: Any) -> None:
        """Change live simulator settings (outcome mix, style, faults of the callback side)."""
        self.sim.update_config(changes)

    def fault(self, **spec: Any) -> None:
        """Make the next submissions misbehave (status, delay_s, count, table)."""
        self.sim.inject_fault(**spec)

    def faults_left(self) -> int:
        """Injected faults not used up yet (read over the control API)."""
        return len(httpx.get(f"{self.url}/_sim/faults", timeout=5).json())

    def rows(self, table: SimTable | None = None) -> list[dict[str, Any]]:
        """Accepted rows (of one table, or all)."""
        found = self.sim.rows()
        return found if table is None else [r for r in found if r["table_id"] == table.id]

    def stats(self) -> dict[str, Any]:
        """The simulator's counters."""
        return self.sim.stats()


@dataclass
class SimProcess:
    """The simulator as its own ``clayloop sim clay`` process, read over its control API.

    For runs whose timing matters (four workers at Clay's full rate): in a process of its
    own, the simulator's clock is not stalled by the test's and the callback server's work.
    """

    proc: subprocess.Popen[bytes]
    url: str

    def _get(self, path: str) -> Any:
        return httpx.get(f"{self.url}{path}", timeout=10).json()

    def table_url(self, name: str) -> str:
        """The webhook URL of a table the process was started with."""
        (table,) = [t for t in self._get("/_sim/tables") if t["name"] == name]
        return str(table["url"])

    def rows(self) -> list[dict[str, Any]]:
        """Accepted rows."""
        found: list[dict[str, Any]] = self._get("/_sim/rows")
        return found

    def stats(self) -> dict[str, Any]:
        """The simulator's counters."""
        found: dict[str, Any] = self._get("/_sim/stats")
        return found


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_sim_process(log: Path, cwd: Path, *options: str) -> SimProcess:
    """Start ``clayloop sim clay`` (one table, ``phone``, no auth) and wait until it answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAYLOOP_")}
    env["CLAYLOOP_SIM_CALLBACK_SECRET"] = SECRET
    args = ["sim", "clay", "--port", str(port), "--tables", "phone", "--no-auth", "--delay"]
    handle = log.open("wb")
    proc = subprocess.Popen(
        [str(CLAYLOOP), *args, "0.05", *options],
        env=env,
        cwd=cwd,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    sim = SimProcess(proc, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while True:
        try:
            sim.stats()
            return sim
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"simulator did not start: {log.read_text()}") from None
            time.sleep(0.05)


class Api:
    """clayloop's workspace API, as one workspace sees it."""

    def __init__(self, http: httpx.AsyncClient, ws: WS) -> None:
        self.http = http
        self.ws = ws

    async def _ok(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = await self.http.request(method, path, headers=self.ws.headers, **kwargs)
        assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()

    async def lead(self, **fields: Any) -> dict[str, Any]:
        """Create (or update) a lead; fields default to a unique email."""
        fields.setdefault("email", unique_email())
        data: dict[str, Any] = await self._ok("POST", "/api/v1/leads", json=fields)
        return data

    async def get_lead(self, lead_id: str) -> dict[str, Any]:
        """The lead resource."""
        data: dict[str, Any] = await self._ok("GET", f"/api/v1/leads/{lead_id}")
        return data

    async def request(self, lead_id: str, kind: str) -> dict[str, Any]:
        """The lead's latest request of ``kind`` (``enrichment.<kind>``)."""
        data: dict[str, Any] = (await self.get_lead(lead_id))["enrichment"][kind]
        return data

    async def add_target(self, kind: str, url: str, **fields: Any) -> dict[str, Any]:
        """Add a target over the API."""
        fields.setdefault("auth_token", SIM_TOKEN)
        data: dict[str, Any] = await self._ok(
            "POST", "/api/v1/targets", json={"kind": kind, "url": url, **fields}
        )
        return data

    async def pause(self, target_id: str) -> dict[str, Any]:
        """Pause a target."""
        data: dict[str, Any] = await self._ok("POST", f"/api/v1/targets/{target_id}/pause")
        return data

    async def resume(self, target_id: str) -> dict[str, Any]:
        """Resume a target."""
        data: dict[str, Any] = await self._ok("POST", f"/api/v1/targets/{target_id}/resume")
        return data

    async def targets(self) -> dict[str, dict[str, Any]]:
        """The workspace's targets by id."""
        items = (await self._ok("GET", "/api/v1/targets"))["items"]
        return {t["id"]: t for t in items}

    async def status(self) -> dict[str, Any]:
        """``/api/v1/status``."""
        data: dict[str, Any] = await self._ok("GET", "/api/v1/status")
        return data

    async def alerts(self) -> list[dict[str, Any]]:
        """Open alerts of the workspace (``/api/v1/alerts``)."""
        items: list[dict[str, Any]] = (await self._ok("GET", "/api/v1/alerts"))["items"]
        return items

    async def alert_codes(self) -> set[str]:
        """Codes of the open alerts."""
        return {a["code"] for a in await self.alerts()}

    async def connect(
        self, sim: Sim, kind: str, *, table: SimTable | None = None, **fields: Any
    ) -> tuple[dict[str, Any], SimTable]:
        """A new simulator table and a target of ``kind`` pointing at it."""
        table = table or sim.table(kind, auth_token=fields.get("auth_token", SIM_TOKEN))
        return await self.add_target(kind, sim.webhook(table), **fields), table


@dataclass
class Loop:
    """clayloop with its worker on a real port (one per test)."""

    server: LiveServer
    settings: Settings
    http: httpx.AsyncClient

    @property
    def url(self) -> str:
        """The app's base URL (also its public URL: callbacks come here)."""
        return self.server.url

    def api(self, ws: WS) -> Api:
        """The API as ``ws`` sees it."""
        return Api(self.http, ws)


# --- Reading the database ------------------------------------------------------------------


async def request(engine: AsyncEngine, request_id: str) -> Any:
    """One request row."""
    return (await rows(engine, sa.select(R).where(R.c.id == request_id)))[0]


async def open_count(engine: AsyncEngine, workspace_id: str) -> int:
    """Requests of a workspace still queued, sending or sent."""
    found = await rows(
        engine,
        sa.select(sa.func.count()).where(R.c.workspace_id == workspace_id, R.c.status.in_(OPEN)),
    )
    return int(found[0][0])


async def usage(engine: AsyncEngine, scope: str, scope_id: str) -> Any:
    """Today's usage row of a workspace or target (None when nothing was counted)."""
    u = m.usage_daily
    found = await rows(engine, sa.select(u).where(u.c.scope == scope, u.c.scope_id == scope_id))
    return found[0] if found else None


async def sends_recorded(engine: AsyncEngine, workspace_id: str, sim: Sim) -> bool:
    """Whether the worker recorded every row the simulator accepted for this workspace.

    A callback can close a request before the worker commits Clay's 200 for it, so a
    closed request is not yet a counted send.
    """
    accepted = Counter(r["request_id"] for r in sim.rows())
    if not accepted:
        return True
    found = await rows(
        engine,
        sa.select(R.c.id, R.c.send_count).where(
            R.c.workspace_id == workspace_id, R.c.id.in_(list(accepted))
        ),
    )
    return all(r.send_count >= accepted[r.id] for r in found)


async def settle(engine: AsyncEngine, ws: WS, sim: Sim, within: float = 30.0) -> None:
    """Wait until no request of ``ws`` is open, the simulator has no callback pending and
    every row it accepted is recorded as sent."""

    async def done() -> bool:
        return (
            sim.sim.pending_callbacks == 0
            and await open_count(engine, ws.id) == 0
            and await sends_recorded(engine, ws.id, sim)
        )

    await eventually(done, within=within)


ANY = object()


async def wait_status(
    api: Api, lead_id: str, kind: str, status: str, reason: object = ANY, within: float = 20
) -> dict[str, Any]:
    """Wait until the lead's request of ``kind`` has ``status`` (and ``reason``, if given)."""
    seen: dict[str, Any] = {}

    async def check() -> bool:
        seen.update(await api.request(lead_id, kind))
        return seen["status"] == status and (reason is ANY or seen["reason"] == reason)

    try:
        await eventually(check, within=within)
    except AssertionError:
        raise AssertionError(f"{kind} request of {lead_id} never became {status}: {seen}") from None
    return seen


# --- What the simulator decided, as clayloop must record it --------------------------------


def expected_status(row: dict[str, Any]) -> str:
    """The request status a simulator row's decision must end in.

    An ``error`` in the ``no_ids`` style is sent as ``{"success": false}`` with no message,
    which no reader can tell from a miss: it lands as not_found.
    """
    if row["outcome"] == "found":
        return "enriched"
    if row["outcome"] == "error" and row["style"] != "no_ids":
        return "failed"
    return "not_found"


def unique_linkedin() -> str:
    """A LinkedIn profile URL no other lead has."""
    return f"https://www.linkedin.com/in/lead-{uuid.uuid4().hex[:12]}"


def normalized_value(kind: str, value: str) -> str:
    """The simulator's found value as clayloop stores it."""
    return normalize_linkedin_url(value) if kind == "linkedin" else normalize_phone(value, "US")


def request_ids(sim_rows: Iterable[dict[str, Any]]) -> list[str]:
    """The request ids of simulator rows, in arrival order."""
    return [r["request_id"] for r in sim_rows]


# --- Worker processes ------------------------------------------------------------------------


def worker_env(database_url: str, public_url: str, **settings: Any) -> dict[str, str]:
    """The environment of a ``clayloop worker`` process for the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAYLOOP_")}
    values: dict[str, Any] = {
        "database_url": database_url,
        "public_url": public_url,
        "token_key": TOKEN_KEY,
        "callback_secrets": SECRET,
        "log_format": "json",
        "log_level": "INFO",
        "worker_poll_seconds": 0.05,
        "sweep_interval_seconds": 0.2,
        "monitor_interval_seconds": 0.5,
        "backoff_base_seconds": 0.05,
        "lease_seconds": 3,
        "send_timeout_seconds": 2.5,
        "db_pool_size": 5,
        "db_max_overflow": 5,
    }
    values.update(settings)
    env.update({f"CLAYLOOP_{k.upper()}": str(v) for k, v in values.items()})
    return env


@dataclass
class WorkerProcess:
    """A ``clayloop worker`` subprocess; its output goes to ``log``."""

    proc: subprocess.Popen[bytes]
    log: Path
    name: str = field(default="worker")

    def kill(self) -> int:
        """SIGKILL: the worker dies mid-whatever; returns the exit code."""
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(15)

    def terminate(self) -> None:
        """SIGTERM: ask for a graceful stop."""
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the process to end; returns its exit code."""
        return self.proc.wait(timeout)

    def output(self) -> str:
        """What the worker logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_worker(env: dict[str, str], log: Path, cwd: Path) -> WorkerProcess:
    """Start ``clayloop worker``."""
    handle = log.open("wb")
    proc = subprocess.Popen(
        [str(CLAYLOOP), "worker"], env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT
    )
    handle.close()
    return WorkerProcess(proc, log, log.stem)


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the ``clayloop`` command line; returns the finished process (output captured)."""
    return subprocess.run(
        [str(CLAYLOOP), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
