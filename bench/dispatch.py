"""Dispatch benchmark: does one worker use all of Clay's rate limit, and never exceed it?

Run it as ``.venv/bin/python bench/dispatch.py [--seconds 60] [--queued 100000]
[--database postgresql://…|sqlite:///…]``. It

1. starts the Clay simulator (``clayloop sim clay``) as a subprocess: rate 10/s, burst 20
   per Clay workspace, ``--drop-rate 1`` so it never calls back (this measures sending);
2. runs a baseline in this process: a plain httpx loop that posts rows to a second simulated
   table, in its own simulated Clay workspace (its own bucket), at exactly the ideal pace
   (``burst`` rows at once, then one row every ``1/rate`` s on an absolute schedule);
3. recreates the database (its name must contain "bench": it is dropped and recreated),
   migrates it, adds a workspace and one target (rate 10, burst 20) pointing at the
   simulator's table, and bulk-loads ``--queued`` leads with one queued request each;
4. runs one ``clayloop worker`` subprocess, samples its RSS every second (psutil), and
   SIGTERMs it ``--seconds`` after the simulator accepted its first row;
5. prints a table and writes ``bench/results/dispatch-<timestamp>.json``.

The window and the allowed volume are defined the same way for the worker and the baseline:
the window opens when the simulator accepts the sender's first row (its ``received_at``) and
lasts ``--seconds`` (W); only rows the simulator accepted inside it count. A token bucket
that starts full allows ``allowed = burst + rate x W`` rows in such a window. The worker
passes when it gets at least 99% of ``allowed`` and the simulator answered it no 429.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from clayloop import models as m
from clayloop.config import Settings
from clayloop.kit.db import create_engine, to_async_url
from clayloop.kit.migrate import upgrade
from clayloop.targets.schemas import TargetIn
from clayloop.targets.service import add_target
from clayloop.workspaces.service import create_workspace

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLAYLOOP = str(Path(sys.executable).with_name("clayloop"))
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/clayloop_bench_dispatch"
SIM_TABLE = "bench"
BASELINE_TABLE = "baseline"
CHUNK = 5000
TARGET_RATIO = 0.99
# Callbacks are never made (--drop-rate 1), but rows still carry a callback_url.
UNUSED_CALLBACK = "http://127.0.0.1:9"


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment for subprocesses: no proxies (everything is on loopback)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(extra)
    return env


def parse_ts(value: str) -> float:
    """Epoch seconds of the simulator's ``received_at`` (ISO 8601, milliseconds)."""
    return datetime.fromisoformat(value).timestamp()


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def spawn(argv: list[str], out: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a clayloop subprocess from the repository root, output to ``out``."""
    return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


# --------------------------------------------------------------------------- database


def database_name(url: str) -> str:
    """The database (or SQLite file) the bench recreates; refuses anything not a bench one."""
    name = make_url(url).database or ""
    if "bench" not in Path(name).name:
        raise SystemExit(
            f"refusing to recreate {name!r}: the bench drops its database, so its name must "
            "contain 'bench' (e.g. clayloop_bench_dispatch)"
        )
    return name


def remove_sqlite_files(name: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(name + suffix).unlink(missing_ok=True)


async def recreate_database(url: str) -> None:
    """Drop and create the bench database (PostgreSQL) or delete the file (SQLite)."""
    await _reset_database(url, create=True)


async def drop_database(url: str) -> None:
    await _reset_database(url, create=False)


async def _reset_database(url: str, *, create: bool) -> None:
    name = database_name(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        await asyncio.to_thread(remove_sqlite_files, name)
        return
    admin = create_async_engine(
        to_async_url(parsed.set(database="postgres").render_as_string(hide_password=False)),
        isolation_level="AUTOCOMMIT",
    )
    try:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if create:
                await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        await admin.dispose()


async def load(
    url: str, *, queued: int, webhook: str, token: str | None, rate: float, burst: int
) -> dict[str, Any]:
    """A workspace, one target and ``queued`` leads with one queued request each."""
    engine = create_engine(Settings(database_url=url))
    started = time.perf_counter()
    try:
        async with engine.begin() as conn:
            workspace_id, _ = await create_workspace(conn, "bench-dispatch")
            target = await add_target(
                conn,
                workspace_id,
                TargetIn(kind="linkedin", url=webhook, auth_token=token, rate=rate, burst=burst),
            )
        now = datetime.now(UTC)
        # Distinct due times, oldest first, all in the past: like a queue built up over time.
        first_due = now - timedelta(milliseconds=queued + 60_000)
        for start in range(0, queued, CHUNK):
            leads: list[dict[str, Any]] = []
            requests: list[dict[str, Any]] = []
            for i in range(start, min(queued, start + CHUNK)):
                lead_id = str(uuid.uuid4())
                due = first_due + timedelta(milliseconds=i)
                leads.append(
                    {
                        "id": lead_id,
                        "workspace_id": workspace_id,
                        "external_id": f"bench-{i}",
                        "email": f"lead{i}@bench.example.com",
                        "alternate_emails": [],
                        "first_name": "Bench",
                        "last_name": f"Lead{i}",
                        "company_name": "Bench Inc",
                        "company_domain": "bench.example.com",
                        "sentiment": "Interested",
                        "opted_out": False,
                        "enrichment_status": "pending",
                        "created_at": due,
                        "updated_at": due,
                    }
                )
                requests.append(
                    {
                        "id": str(uuid.uuid4()),
                        "workspace_id": workspace_id,
                        "lead_id": lead_id,
                        "kind": "linkedin",
                        "status": "queued",
                        "attempts": 0,
                        "send_count": 0,
                        "timeout_resends": 0,
                        "next_attempt_at": due,
                        "created_at": due,
                        "updated_at": due,
                    }
                )
            async with engine.begin() as conn:
                await conn.execute(sa.insert(m.lead), leads)
                await conn.execute(sa.insert(m.enrichment_request), requests)
        loaded = time.perf_counter() - started
        async with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                # What autovacuum does soon after a bulk load; without statistics the planner
                # guesses on a 100k-row table it has never looked at.
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql("ANALYZE")
                version = (await conn.exec_driver_sql("SHOW server_version")).scalar()
            else:
                await conn.exec_driver_sql("ANALYZE")
                version = "sqlite " + str(
                    (await conn.exec_driver_sql("SELECT sqlite_version()")).scalar()
                )
    finally:
        await engine.dispose()
    return {
        "workspace_id": workspace_id,
        "target_id": target.id,
        "queued": queued,
        "load_seconds": round(loaded, 2),
        "server": version,
    }


async def request_counts(url: str) -> dict[str, Any]:
    engine = create_engine(Settings(database_url=url))
    try:
        async with engine.connect() as conn:
            R = m.enrichment_request
            by_status = {
                r.status: r.n
                for r in await conn.execute(
                    sa.select(R.c.status, sa.func.count().label("n")).group_by(R.c.status)
                )
            }
            sends = (await conn.execute(sa.select(sa.func.sum(R.c.send_count)))).scalar() or 0
            target = (await conn.execute(sa.select(m.clay_target))).one()
    finally:
        await engine.dispose()
    return {
        "by_status": by_status,
        "send_count_sum": int(sends),
        "target_state": target.state,
        "target_submissions_used": target.submissions_used,
        "target_last_error": target.last_error,
    }


# --------------------------------------------------------------------------- simulator


class Simulator:
    """``clayloop sim clay`` in a subprocess, and its control API."""

    def __init__(self, *, rate: float, burst: int, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [
                CLAYLOOP,
                "sim",
                "clay",
                "--port",
                str(self.port),
                "--tables",
                SIM_TABLE,
                "--rate",
                f"{rate:g}",
                "--burst",
                str(burst),
                "--drop-rate",
                "1",
                "--seed",
                "7",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=child_env({}),
            cwd=ROOT,
        )
        self.http = httpx.AsyncClient(base_url=self.url, trust_env=False, timeout=10)

    async def wait_ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the simulator exited ({self.proc.returncode}); see {self.log}")
            with contextlib.suppress(httpx.TransportError):
                if (await self.http.get("/_sim/stats")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise SystemExit("the simulator did not start")
            await asyncio.sleep(0.1)

    async def table(self, name: str) -> dict[str, Any]:
        tables = (await self.http.get("/_sim/tables")).json()
        return next(t for t in tables if t["name"] == name)

    async def add_table(self, name: str, workspace: str, token: str) -> dict[str, Any]:
        answer = await self.http.post(
            "/_sim/tables", json={"name": name, "workspace": workspace, "auth_token": token}
        )
        answer.raise_for_status()
        return dict(answer.json())

    async def stats(self) -> dict[str, Any]:
        return dict((await self.http.get("/_sim/stats")).json())

    async def received(self, table_id: str) -> list[float]:
        """Epoch seconds at which the simulator accepted each row of a table."""
        rows = (await self.http.get("/_sim/rows", timeout=60)).json()
        return sorted(parse_ts(r["received_at"]) for r in rows if r["table_id"] == table_id)

    async def first_accept(self, table_id: str, within: float) -> float:
        """Wait for the table's first accepted row; its ``received_at``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            stats = await self.stats()
            if stats["submissions"].get(table_id, 0) > 0:
                return (await self.received(table_id))[0]
            await asyncio.sleep(0.02)
        raise SystemExit(f"no row reached the simulator within {within:g} s")

    async def close(self) -> None:
        await self.http.aclose()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def rejected_429(stats: dict[str, Any]) -> int:
    return int(stats["rejected"].get("429", 0))


@dataclass
class Window:
    """What the simulator accepted from one sender in its measurement window."""

    first: float
    seconds: float
    rate: float
    burst: int
    received: list[float]

    @property
    def allowed(self) -> float:
        return self.burst + self.rate * self.seconds

    @property
    def accepted(self) -> int:
        end = self.first + self.seconds
        return sum(1 for t in self.received if t <= end)

    @property
    def ratio(self) -> float:
        return self.accepted / self.allowed

    def at(self, offset: float) -> int:
        """Rows accepted in the first ``offset`` seconds of the window."""
        return sum(1 for t in self.received if t <= self.first + offset)

    def to_json(self) -> dict[str, Any]:
        return {
            "window_start": datetime.fromtimestamp(self.first, UTC).isoformat(),
            "window_seconds": self.seconds,
            "allowed": self.allowed,
            "accepted_in_window": self.accepted,
            "accepted_total": len(self.received),
            "ratio": round(self.ratio, 5),
            "accepted_at_10s": self.at(10.0),
            # When the first rows arrived (s after the window opened): the burst and what
            # follows it is where bunching shows.
            "first_arrivals": [round(t - self.first, 3) for t in self.received[:40]],
        }


# --------------------------------------------------------------------------- baseline


async def baseline(
    sim: Simulator, *, seconds: float, rate: float, burst: int
) -> tuple[Window, Counter[int], list[float]]:
    """A plain loop posting rows at the ideal pace into a fresh bucket of the simulator."""
    token = "baseline-" + uuid.uuid4().hex
    table = await sim.add_table(BASELINE_TABLE, "baseline", token)
    statuses: Counter[int] = Counter()
    refused: list[float] = []  # when (s after the first post) a row was refused
    # Keep sending a little past the window so its end is decided by the clock, as for
    # the worker, not by running out of rows.
    total = burst + int(rate * (seconds + 1.0))
    async with httpx.AsyncClient(
        trust_env=False, timeout=15, limits=httpx.Limits(max_connections=burst)
    ) as client:

        async def post(i: int) -> None:
            try:
                answer = await client.post(
                    table["url"],
                    json={"request_id": f"baseline-{i}", "email": f"b{i}@bench.example.com"},
                    headers={"x-clay-webhook-auth": token},
                )
                statuses[answer.status_code] += 1
                if answer.status_code != 200:
                    refused.append(round(time.perf_counter() - t0, 3))
            except httpx.HTTPError:
                statuses[0] += 1

        tasks = []
        t0 = time.perf_counter()
        for i in range(total):
            due = t0 + max(0, i - burst + 1) / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)
    received = await sim.received(table["id"])
    return Window(received[0], seconds, rate, burst, received), statuses, refused


# --------------------------------------------------------------------------- worker


@dataclass
class Sample:
    at: float
    rss: int
    cpu: float


@dataclass
class Sampler:
    """Samples a process's RSS and CPU time every ``interval`` seconds in a thread."""

    pid: int
    interval: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name="rss-sampler").start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        proc = psutil.Process(self.pid)
        while not self._stop.is_set():
            try:
                with proc.oneshot():
                    cpu = proc.cpu_times()
                    self.samples.append(
                        Sample(time.time(), proc.memory_info().rss, cpu.user + cpu.system)
                    )
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def nearest(self, when: float) -> Sample | None:
        if not self.samples:
            return None
        return min(self.samples, key=lambda s: abs(s.at - when))

    def last_before(self, when: float) -> Sample | None:
        before = [s for s in self.samples if s.at <= when]
        return before[-1] if before else None


async def run_worker(
    sim: Simulator, url: str, *, table_id: str, seconds: float, rate: float, burst: int, log: Path
) -> dict[str, Any]:
    before = await sim.stats()
    with log.open("w") as out:
        env = child_env(
            {
                "CLAYLOOP_DATABASE_URL": url,
                "CLAYLOOP_PUBLIC_URL": UNUSED_CALLBACK,
                "CLAYLOOP_LOG_FORMAT": "json",
                "CLAYLOOP_LOG_LEVEL": "INFO",
            }
        )
        spawned = time.time()
        proc = spawn([CLAYLOOP, "worker"], out, env)
        sampler = Sampler(proc.pid)
        sampler.start()
        try:
            first = await sim.first_accept(table_id, within=120)
            end = first + seconds
            while (left := end - time.time()) > 0:
                if proc.poll() is not None:
                    raise SystemExit(f"the worker exited early ({proc.returncode}); see {log}")
                await asyncio.sleep(min(left, 0.5))
            proc.send_signal(signal.SIGTERM)
            terminated = time.time()
            try:
                await asyncio.to_thread(proc.wait, 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            exited = time.time()
        finally:
            sampler.stop()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    after = await sim.stats()
    window = Window(first, seconds, rate, burst, await sim.received(table_id))
    at10 = sampler.nearest(first + 10.0)
    at_end = sampler.last_before(terminated)
    at_start = sampler.last_before(first) or (sampler.samples[0] if sampler.samples else None)
    peak = max((s.rss for s in sampler.samples), default=None)
    cpu_window = (
        at_end.cpu - at10.cpu
        if at_end is not None and at10 is not None and at_end.at > at10.at
        else None
    )
    return {
        "window": window,
        "rejected_429": rejected_429(after) - rejected_429(before),
        "rejected_other": {
            k: v - before["rejected"].get(k, 0)
            for k, v in after["rejected"].items()
            if k != "429" and v - before["rejected"].get(k, 0)
        },
        "startup_seconds": round(first - spawned, 2),
        "stop_seconds": round(exited - terminated, 2),
        "exit_code": proc.returncode,
        "rss_first_send": at_start.rss if at_start else None,
        "rss_10s": at10.rss if at10 else None,
        "rss_end": at_end.rss if at_end else None,
        "rss_peak": peak,
        "cpu_share_10s_to_end": (
            round(cpu_window / (at_end.at - at10.at), 3)
            if cpu_window is not None and at_end is not None and at10 is not None
            else None
        ),
        "samples": [
            {"t": round(s.at - first, 2), "rss": s.rss, "cpu_s": round(s.cpu, 3)}
            for s in sampler.samples
        ],
    }


# --------------------------------------------------------------------------- main


def report(result: dict[str, Any]) -> str:
    w = result["worker"]
    b = result["baseline"]
    rss = w["rss"]
    lines = [
        f"dispatch bench: {result['database']['kind']} ({result['database']['server']}), "
        f"{result['queued']:,} queued (loaded in {result['database']['load_seconds']} s), "
        f"{result['machine']['cpus']} CPUs",
        f"window: from the simulator's first accepted row of a sender, {result['seconds']:g} s; "
        f"allowed = burst + rate x W = {result['burst']} + {result['rate']:g} x "
        f"{result['seconds']:g} = {w['allowed']:g}",
        "",
        f"{'sender':<10} {'accepted':>9} {'allowed':>8} {'ratio':>8} {'429s':>5} {'at 10 s':>8}",
    ]
    if b is not None:
        lines.append(
            f"{'baseline':<10} {b['accepted_in_window']:>9} {b['allowed']:>8g} "
            f"{b['ratio']:>8.2%} {b['rejected_429']:>5} {b['accepted_at_10s']:>8}"
        )
    lines.append(
        f"{'worker':<10} {w['accepted_in_window']:>9} {w['allowed']:>8g} "
        f"{w['ratio']:>8.2%} {w['rejected_429']:>5} {w['accepted_at_10s']:>8}"
    )
    if b is not None and b["accepted_in_window"]:
        lines.append(f"worker / baseline: {w['accepted_in_window'] / b['accepted_in_window']:.2%}")
    lines += [
        "",
        f"worker RSS: before first send {mib(rss['first_send'])}, "
        f"at 10 s {mib(rss['at_10s'])}, end {mib(rss['end'])}, peak {mib(rss['peak'])}; "
        f"CPU {w['cpu_share_10s_to_end'] if w['cpu_share_10s_to_end'] is not None else '-'} "
        "of a core (10 s to end)",
        f"worker: start-up {w['startup_seconds']} s, stop {w['stop_seconds']} s, "
        f"exit {w['exit_code']}, accepted after the window {w['accepted_after_window']}, "
        f"requests {result['requests']['by_status']}",
        f"load average (1 min) at start / end: {result['loadavg'][0]} / {result['loadavg'][1]}",
        f"verdict: {'PASS' if result['pass'] else 'FAIL'} (>= {TARGET_RATIO:.0%} of allowed, "
        "zero 429s)",
    ]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    url = args.database
    kind = make_url(url).get_backend_name()
    RESULTS.mkdir(parents=True, exist_ok=True)
    run_id = stamp()
    load_start = round(os.getloadavg()[0], 2)
    sim = Simulator(rate=args.rate, burst=args.burst, log=RESULTS / f"dispatch-{run_id}-sim.log")
    try:
        await sim.wait_ready()
        bench_table = await sim.table(SIM_TABLE)

        base: dict[str, Any] | None = None
        if args.baseline:
            print(f"baseline: ideal-pace sender for {args.seconds:g} s ...", flush=True)
            before = await sim.stats()
            window, statuses, refused = await baseline(
                sim, seconds=args.seconds, rate=args.rate, burst=args.burst
            )
            base = window.to_json() | {
                "rejected_429": rejected_429(await sim.stats()) - rejected_429(before),
                "statuses": {str(k): v for k, v in sorted(statuses.items())},
                "refused_at": refused,
            }

        print(f"database: recreating {kind} and loading {args.queued:,} requests ...", flush=True)
        await recreate_database(url)
        await asyncio.to_thread(upgrade, url)
        db = await load(
            url,
            queued=args.queued,
            webhook=bench_table["url"],
            token=bench_table["auth_token"],
            rate=args.rate,
            burst=args.burst,
        )
        print(f"  loaded in {db['load_seconds']} s", flush=True)

        print(f"worker: one 'clayloop worker' for {args.seconds:g} s ...", flush=True)
        w = await run_worker(
            sim,
            url,
            table_id=bench_table["id"],
            seconds=args.seconds,
            rate=args.rate,
            burst=args.burst,
            log=RESULTS / f"dispatch-{run_id}-worker.log",
        )
        counts = await request_counts(url)
        window: Window = w.pop("window")
        worker = window.to_json() | {
            "accepted_after_window": len(window.received) - window.accepted,
            "rss": {
                "first_send": w.pop("rss_first_send"),
                "at_10s": w.pop("rss_10s"),
                "end": w.pop("rss_end"),
                "peak": w.pop("rss_peak"),
            },
            **w,
        }
        passed = worker["ratio"] >= TARGET_RATIO and worker["rejected_429"] == 0
        result = {
            "bench": "dispatch",
            "run_id": run_id,
            "command": " ".join([".venv/bin/python", "bench/dispatch.py", *sys.argv[1:]]),
            "machine": machine(),
            "database": {"kind": kind, **db},
            "seconds": args.seconds,
            "queued": args.queued,
            "rate": args.rate,
            "burst": args.burst,
            "definition": (
                "window = from the simulator's receipt of a sender's first accepted row, "
                f"{args.seconds:g} s long (the worker is SIGTERMed at its end); accepted = rows "
                "the simulator accepted inside the window; allowed = burst + rate x window; "
                "ratio = accepted / allowed"
            ),
            "baseline": base,
            "worker": worker,
            "requests": counts,
            "pass": passed,
            # Other work on the machine competes for the same cores; worth knowing.
            "loadavg": [load_start, round(os.getloadavg()[0], 2)],
        }
        out = RESULTS / f"dispatch-{run_id}.json"
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print()
        print(report(result))
        print(f"\nresult: {out.relative_to(ROOT)}")
        return 0 if passed else 1
    finally:
        await sim.close()
        if not args.keep_database:
            with contextlib.suppress(Exception):
                await drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window (s)")
    parser.add_argument("--queued", type=int, default=100_000, help="queued requests to load")
    parser.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        help="bench database URL (recreated and dropped; its name must contain 'bench')",
    )
    parser.add_argument("--rate", type=float, default=10.0, help="rows/s Clay allows")
    parser.add_argument("--burst", type=int, default=20, help="burst Clay allows")
    parser.add_argument(
        "--no-baseline", dest="baseline", action="store_false", help="skip the baseline sender"
    )
    parser.add_argument(
        "--keep-database", action="store_true", help="leave the database for inspection"
    )
    args = parser.parse_args()
    parsed = make_url(args.database)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        # The worker runs in another directory's context: make the file path absolute.
        path = Path(parsed.database).resolve()
        args.database = parsed.set(database=str(path)).render_as_string(hide_password=False)
    database_name(args.database)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
