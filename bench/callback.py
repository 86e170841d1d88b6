"""Callback benchmark: applied Clay callbacks per second against one ``clayloop serve`` process.

Run it as ``.venv/bin/python bench/callback.py [--seconds 20] [--concurrency 32]
[--database-admin postgresql://postgres@127.0.0.1:5432/postgres]``. It

1. creates a throwaway PostgreSQL database (dropped at the end), migrates it, creates a
   workspace and bulk-loads leads, each with an enriched ``linkedin`` request and a ``sent``
   ``phone`` request, so that every callback of a run completes a distinct request (more
   are loaded between runs when the next one could need them);
2. serves, one at a time, each as ONE process under the same ``uvicorn.run(...)`` call that
   ``clayloop serve`` makes (uvloop + httptools), and measures with the same load:

   * ``echo``: a minimal Starlette app answering the JSON body back (the HTTP ceiling);
   * ``raw asyncpg``: a minimal Starlette app doing the essential database work of a
     callback with an asyncpg pool (one transaction: UPDATE one request by id, INSERT one
     journal row);
   * ``clayloop``: ``clayloop serve --no-worker`` at ``CLAYLOOP_LOG_LEVEL=WARNING``, then
     again at the default ``INFO`` (one JSON log line per callback, to a file);

   each answer must be 200 with ``"result":"applied"`` (the echo: 200);
3. load: ``bench/_loadgen.py`` in its own process, ``--concurrency`` keep-alive connections,
   one request in flight on each, ``--warmup`` seconds, then ``--seconds`` measured;
4. profiles one more clayloop run with py-spy (``--profile-seconds``, 0 to skip) and sums
   the samples by layer;
5. measures the CPU cost of one callback's database work written four ways, in-process and
   sequentially (``bench/_callback_variants.py``, ``--variants``, 0 to skip);
6. prints a table and writes ``bench/results/callback-<timestamp>.json``.

The machine may be shared: before each server it waits (``--quiet-timeout``) until the machine
is under ``--quiet-below`` percent busy, and reports the CPU others used during each window.

Targets (issue 3): clayloop at least 25% of the raw-asyncpg throughput, p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from itertools import pairwise
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import sqlalchemy as sa

from clayloop import models as m
from clayloop.config import Settings
from clayloop.kit.db import create_engine
from clayloop.kit.ids import callback_token
from clayloop.kit.migrate import upgrade
from clayloop.leads.normalize import linkedin_match_key
from clayloop.workspaces.service import create_workspace

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
CLAYLOOP = str(BIN / "clayloop")
PYSPY = str(BIN / "py-spy")
LOADGEN = str(ROOT / "bench" / "_loadgen.py")
APPS = str(ROOT / "bench" / "_callback_apps.py")
VARIANTS = str(ROOT / "bench" / "_callback_variants.py")
VARIANT_NAMES = ("clayloop", "core_prebuilt", "driver_sql", "bare_asyncpg", "raw_baseline")
PATH = "/api/webhooks/clay"
CHUNK = 5000
EXPECT_APPLIED = '"result":"applied"'
TARGET_RATIO = 0.25
TARGET_P99_MS = 50.0
MAX_RAW_RATE = 4000.0  # most rows one raw-asyncpg run may consume per second


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def versions() -> dict[str, str]:
    names = ("uvicorn", "uvloop", "httptools", "starlette", "fastapi", "sqlalchemy", "asyncpg")
    found: dict[str, str] = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    src_dirty = False
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        src_dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "src"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions(),
        "git_head": commit,
        "src_changed_since_head": src_dirty,
        "src_digest": src_digest(),
    }


def src_digest() -> str:
    """A short digest of the measured source (the tree may differ from HEAD)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a subprocess: no proxies, none of the developer's CLAYLOOP_*."""
    env = {
        k: v
        for k, v in os.environ.items()
        if "proxy" not in k.lower() and not k.startswith("CLAYLOOP_")
    }
    env.update(extra)
    return env


def postgres_cpu(database: str) -> float:
    """CPU seconds used so far by PostgreSQL for this bench.

    Backends serving the bench database, plus the shared background processes (writer,
    checkpointer, WAL writer, autovacuum); backends of other databases are left out.
    """
    total = 0.0
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] != "postgres":
            continue
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "(" in cmdline and database not in cmdline:
            continue  # a client backend ("... user db 127.0.0.1(port) state") of another db
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def process_cpu(pid: int) -> float:
    with contextlib.suppress(psutil.Error):
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    return float("nan")


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores) so far."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def wait_for_quiet(limit: float, timeout: float) -> dict[str, float]:
    """Wait until the machine is nearly idle (other people share it), at most ``timeout`` s.

    Quiet means under ``limit`` percent of all cores busy over two consecutive seconds.
    """
    started = time.monotonic()
    calm = 0
    busy = 100.0
    while time.monotonic() - started < timeout:
        busy = psutil.cpu_percent(interval=1.0)
        calm = calm + 1 if busy < limit else 0
        if calm >= 2:
            break
    return {"waited_s": round(time.monotonic() - started, 1), "busy_percent_before": busy}


# --------------------------------------------------------------------------- database


@dataclass
class Database:
    """The throwaway database and the pool of sent phone requests not yet called back."""

    admin: str
    name: str
    url: str
    workspace_id: str = ""
    token_key: str = ""
    pool: list[tuple[str, str, str]] = field(default_factory=list)  # request, lead, phone
    loaded: int = 0
    load_seconds: float = 0.0

    def take(self, count: int) -> list[tuple[str, str, str]]:
        taken, self.pool = self.pool[:count], self.pool[count:]
        return taken


async def create_database(admin: str) -> Database:
    name = f"clayloop_bench_callback_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = admin.rpartition("/")
    return Database(admin=admin, name=name, url=f"{base}/{name}")


async def drop_database(db: Database) -> None:
    conn = await asyncpg.connect(db.admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
    finally:
        await conn.close()


def settings_for(url: str) -> Settings:
    return Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]


async def create_bench_workspace(db: Database) -> None:
    engine = create_engine(settings_for(db.url))
    try:
        async with engine.begin() as conn:
            db.workspace_id, _ = await create_workspace(conn, "bench-callback")
    finally:
        await engine.dispose()


async def add_leads(db: Database, count: int) -> None:
    """``count`` leads, each with an enriched linkedin request and a sent phone request."""
    engine = create_engine(settings_for(db.url))
    started = time.perf_counter()
    now = datetime.now(UTC)
    linkedin_at = now - timedelta(hours=2)
    phone_at = now - timedelta(hours=1)
    try:
        for start in range(db.loaded, db.loaded + count, CHUNK):
            leads: list[dict[str, Any]] = []
            requests: list[dict[str, Any]] = []
            fresh: list[tuple[str, str, str]] = []
            for i in range(start, min(db.loaded + count, start + CHUNK)):
                lead_id = str(uuid.uuid4())
                linkedin = f"https://www.linkedin.com/in/jane-doe-{i}"
                leads.append(
                    {
                        "id": lead_id,
                        "workspace_id": db.workspace_id,
                        "ghl_contact_id": None,
                        "external_id": f"crm-{i}",
                        "email": f"jane.doe{i}@acme{i % 997}.com",
                        "alternate_emails": [],
                        "linkedin_url": linkedin,
                        "linkedin_key": linkedin_match_key(linkedin),
                        "phone": None,
                        "first_name": "Jane",
                        "last_name": f"Doe{i}",
                        "company_name": f"Acme {i % 997}",
                        "company_domain": f"acme{i % 997}.com",
                        "title": "VP Sales",
                        "sentiment": "interested",
                        "opted_out": False,
                        "enrichment_status": "pending",
                        "created_at": linkedin_at,
                        "updated_at": phone_at,
                    }
                )
                common = {
                    "workspace_id": db.workspace_id,
                    "lead_id": lead_id,
                    "reason": None,
                    "attempts": 1,
                    "send_count": 1,
                    "timeout_resends": 0,
                    "next_attempt_at": None,
                    "lease_until": None,
                    "lease_owner": None,
                    "target_id": None,
                    "last_error": None,
                }
                requests.append(
                    common
                    | {
                        "id": str(uuid.uuid4()),
                        "kind": "linkedin",
                        "status": "enriched",
                        "sent_at": linkedin_at,
                        "completed_at": linkedin_at + timedelta(minutes=1),
                        "result_value": linkedin,
                        "created_at": linkedin_at,
                        "updated_at": linkedin_at + timedelta(minutes=1),
                    }
                )
                phone_request = str(uuid.uuid4())
                requests.append(
                    common
                    | {
                        "id": phone_request,
                        "kind": "phone",
                        "status": "sent",
                        "sent_at": phone_at,
                        "completed_at": None,
                        "result_value": None,
                        "created_at": phone_at,
                        "updated_at": phone_at,
                    }
                )
                fresh.append((phone_request, lead_id, f"+1 415 555 {i % 10000:04d}"))
            async with engine.begin() as conn:
                await conn.execute(sa.insert(m.lead), leads)
                await conn.execute(sa.insert(m.enrichment_request), requests)
            db.pool.extend(fresh)
            db.loaded += len(fresh)
    finally:
        await engine.dispose()
    db.load_seconds += time.perf_counter() - started


async def settle(db: Database) -> None:
    """Vacuum, analyze and checkpoint, so no run pays for the previous one's garbage."""
    conn = await asyncpg.connect(db.url)
    try:
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def ensure(db: Database, needed: int) -> None:
    if len(db.pool) < needed:
        await add_leads(db, needed - len(db.pool))
    await settle(db)


async def db_sessions(db: Database) -> int:
    """Sessions ever opened on the bench database (PostgreSQL 14+), 0 when unknown."""
    conn = await asyncpg.connect(db.admin)
    try:
        value = await conn.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = $1", db.name
        )
    except asyncpg.PostgresError:
        value = 0
    finally:
        await conn.close()
    return int(value or 0)


async def count_applied(db: Database) -> dict[str, int]:
    conn = await asyncpg.connect(db.url)
    try:
        rows = await conn.fetch(
            "SELECT outcome, count(*) AS n FROM callback_event GROUP BY outcome ORDER BY outcome"
        )
    finally:
        await conn.close()
    return {r["outcome"]: r["n"] for r in rows}


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    """One server process under test."""

    label: str
    argv: list[str]
    env: dict[str, str]
    ready_path: str
    log: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=cwd
            )
        deadline = time.monotonic() + 90
        url = f"http://127.0.0.1:{self.port}{self.ready_path}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.label} exited at start; see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                    return
            time.sleep(0.2)
        raise SystemExit(f"{self.label} did not answer {url} within 90 s; see {self.log}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def write_batches(server: Server) -> dict[str, Any]:
    """clayloop's group commit over the whole run, warm-up included (from /metrics)."""
    with contextlib.suppress(httpx.HTTPError):
        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
        found = dict(
            re.findall(r"^clayloop_callback_write_batch_size_(count|sum) (\S+)$", text, re.M)
        )
        if found:
            batches, written = float(found["count"]), float(found["sum"])
            return {"write_batches": batches, "write_batch_mean": written / max(batches, 1)}
    return {}


def callback_body(db: Database, secret_item: tuple[str, str, str]) -> str:
    request_id, lead_id, phone = secret_item
    return json.dumps(
        {
            "request_id": request_id,
            "lead_id": lead_id,
            "enrichment_type": "phone",
            "callback_token": callback_token(db.token_key, request_id),
            "success": True,
            "phone": phone,
        }
    )


def measure(
    server: Server,
    *,
    bodies: list[str],
    headers: dict[str, str],
    expect: str | None,
    args: argparse.Namespace,
    work: Path,
    seconds: float,
    database: str,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    """Run the load generator against a started server; return its figures plus CPU use.

    CPU percentages are of one core over the measured window (200 = both cores of two).
    """
    assert server.proc is not None
    spec = {
        "host": "127.0.0.1",
        "port": server.port,
        "path": PATH,
        "headers": headers,
        "bodies": bodies,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "seconds": seconds,
        "expect": expect,
    }
    spec_path = work / f"spec-{server.port}.json"
    spec_path.write_text(json.dumps(spec))
    gen = subprocess.Popen(
        [sys.executable, LOADGEN, str(spec_path)],
        stdout=subprocess.PIPE,
        env=child_env({}),
        cwd=ROOT,
        text=True,
    )
    assert gen.stdout is not None
    cpu: dict[str, float] = {}
    spy: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {}
    for line in gen.stdout:
        tag = line.strip()
        if tag == "W":
            cpu["server0"], cpu["pg0"] = process_cpu(server.proc.pid), postgres_cpu(database)
            cpu["gen0"], cpu["all0"] = process_cpu(gen.pid), machine_busy()
            if profile_to is not None:
                spy = subprocess.Popen(
                    [
                        PYSPY,
                        "record",
                        "--pid",
                        str(server.proc.pid),
                        "--duration",
                        str(int(seconds)),
                        "--rate",
                        "100",
                        "--nonblocking",
                        "--format",
                        "raw",
                        "-o",
                        str(profile_to),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
        elif tag == "E":
            cpu["server1"], cpu["pg1"] = process_cpu(server.proc.pid), postgres_cpu(database)
            cpu["gen1"], cpu["all1"] = process_cpu(gen.pid), machine_busy()
        elif tag.startswith("{"):
            result = json.loads(tag)
    if gen.wait() != 0 or not result:
        raise SystemExit(f"the load generator failed against {server.label}")
    if spy is not None:
        spy.wait(timeout=120)
    used = {k: cpu[k + "1"] - cpu[k + "0"] for k in ("server", "pg", "gen", "all")}
    result["server_cpu_percent"] = 100 * used["server"] / seconds
    result["postgres_cpu_percent"] = 100 * used["pg"] / seconds
    # Everything else busy on the machine meanwhile (py-spy, other people's work).
    other = used["all"] - used["server"] - used["pg"] - used["gen"]
    result["other_cpu_percent"] = 100 * max(0.0, other) / seconds
    return result


# --------------------------------------------------------------------------- profile


# py-spy names a frame "function (package/module.py:line)".
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("clayloop (our code)", ("(clayloop/",)),
    ("SQLAlchemy: statement building, cache key, compile", ("(sqlalchemy/sql/",)),
    ("SQLAlchemy: engine, pool, result, asyncio adapter", ("(sqlalchemy/",)),
    ("asyncpg (driver, socket writes)", ("(asyncpg/",)),
    ("uvicorn + httptools (HTTP protocol)", ("(uvicorn/", "(httptools/")),
    ("FastAPI + Starlette (middleware, routing, response)", ("(fastapi/", "(starlette/")),
    ("pydantic", ("(pydantic/", "(pydantic_core/")),
    ("json (stdlib)", ("(json/",)),
    ("structlog", ("(structlog/",)),
    ("logging (stdlib)", ("(logging/",)),
    ("prometheus_client", ("(prometheus_client/",)),
    ("phonenumbers", ("(phonenumbers/",)),
    ("greenlet", ("(greenlet/",)),
    ("asyncio / uvloop (event loop)", ("(asyncio/", "(uvloop/")),
]
ROOT_FRAMES = ("(clayloop/cli.py", "(clayloop:")

# Share of samples with at least one frame of the package anywhere in the stack.
INCLUSIVE: list[tuple[str, tuple[str, ...]]] = [
    ("SQLAlchemy and all it calls (asyncpg included)", ("(sqlalchemy/",)),
    ("SQLAlchemy cache key generation (sql/cache_key.py)", ("(sqlalchemy/sql/cache_key.py",)),
    ("SQLAlchemy compiler (sql/compiler.py)", ("(sqlalchemy/sql/compiler.py",)),
    ("asyncpg (any frame)", ("(asyncpg/",)),
    ("structlog (any frame)", ("(structlog/",)),
    ("prometheus_client (any frame)", ("(prometheus_client/",)),
    # Lower bounds: SQLAlchemy runs its sync core in greenlets whose stacks py-spy does not
    # link to the coroutine that spawned them, so time under these is partly unattributed.
    ("lower bound: under clay_callback", ("clay_callback (clayloop/",)),
    (
        "lower bound: database work (apply_unlocked, apply_callback)",
        ("apply_unlocked (clayloop/", "apply_callback (clayloop/"),
    ),
    ("journal body redaction (_redacted)", ("_redacted (clayloop/",)),
    ("the log line (_log)", ("_log (clayloop/",)),
    ("payload interpretation (extract_callback, decide)", ("extract_callback (", "decide (")),
    ("secret check (SecretStore.verify)", ("SecretStore.verify (",)),
]


BUILDING = "building SQLAlchemy statements in our code (select/insert/values/where)"


def frame_category(frame: str) -> str | None:
    if any(r in frame for r in ROOT_FRAMES):
        return None
    for label, needles in CATEGORIES:
        if any(n in frame for n in needles):
            return label
    return None


def summarize_profile(path: Path) -> dict[str, Any]:
    """Self time by layer (leaf-most frame of a known layer) and inclusive time of key parts."""
    by_layer: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        label = "other (stdlib, C)"
        for frame in reversed(frames):
            found = frame_category(frame)
            if found is not None:
                label = found
                break
        by_layer[label] += count
        by_function[frames[-1]] += count
        for name, needles in INCLUSIVE:
            if any(n in frame for frame in frames for n in needles):
                inclusive[name] += count
        if any("(clayloop/" in a and "(sqlalchemy/sql/" in b for a, b in pairwise(frames)):
            inclusive[BUILDING] += count

    def pct(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    return {
        "samples": total,
        "self_by_layer_percent": {k: pct(v) for k, v in by_layer.most_common()},
        "inclusive_percent": {k: pct(inclusive[k]) for k in [*(n for n, _ in INCLUSIVE), BUILDING]},
        "top_leaf_functions_percent": {k: pct(v) for k, v in by_function.most_common(15)},
    }


# --------------------------------------------------------------------------- report


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def table(runs: list[dict[str, Any]], raw_rps: float) -> str:
    head = (
        "| server | req/s | p50 ms | p99 ms | ratio to raw asyncpg | errors | "
        "server CPU % | server CPU ms/req | PostgreSQL CPU % | load gen. CPU % | other CPU % | "
        "DB sessions opened | callbacks per write statement |"
    )
    lines = [head, "|---|" + "--:|" * 12]
    for run in runs:
        r = run["result"]
        ratio = r["rps"] / raw_rps if raw_rps else float("nan")
        cpu_ms = 10 * r["server_cpu_percent"] / r["rps"] if r["rps"] else float("nan")
        lines.append(
            f"| {run['label']} | {fmt(r['rps'], 0)} | {fmt(r['p50_ms'], 2)} | "
            f"{fmt(r['p99_ms'], 2)} | {fmt(ratio, 2)} | {r['unexpected_total']} | "
            f"{fmt(r['server_cpu_percent'], 0)} | {fmt(cpu_ms, 3)} | "
            f"{fmt(r['postgres_cpu_percent'], 0)} | "
            f"{fmt(r['client_cpu_percent'], 0)} | {fmt(r['other_cpu_percent'], 0)} | "
            f"{r['db_sessions_opened']} | {fmt(r.get('write_batch_mean', float('nan')))} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def run_all(args: argparse.Namespace, db: Database, work: Path) -> dict[str, Any]:
    secret = "bench-callback-secret-" + uuid.uuid4().hex
    headers = {"user-agent": "clay-bench/1.0", "accept": "*/*", "x-clay-signature": secret}
    runs: list[dict[str, Any]] = []

    def needed(rate: float, seconds: float) -> int:
        return int(rate * (args.warmup + seconds + 2.0) * 1.2) + 20 * args.concurrency

    def clayloop_server(label: str, level: str, tag: str) -> Server:
        port = free_port()
        env = child_env(
            {
                "CLAYLOOP_DATABASE_URL": db.url,
                "CLAYLOOP_CALLBACK_SECRETS": secret,
                "CLAYLOOP_TOKEN_KEY": db.token_key,
                "CLAYLOOP_LOG_LEVEL": level,
                "CLAYLOOP_LOG_FORMAT": "json",
            }
            | dict(args.clayloop_env)
        )
        argv = [CLAYLOOP, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)]
        return Server(label, argv, env, "/healthz", work / f"{tag}.log", port)

    def baseline_server(label: str, app: str) -> Server:
        port = free_port()
        env = child_env({"BENCH_DSN": db.url, "BENCH_POOL": str(args.concurrency)})
        argv = [sys.executable, APPS, app, "--port", str(port)]
        return Server(label, argv, env, "/ping", work / f"{app}.log", port)

    def one(
        server: Server,
        bodies: list[str],
        expect: str | None,
        seconds: float,
        profile_to: Path | None = None,
    ) -> dict[str, Any]:
        quiet = wait_for_quiet(args.quiet_below, args.quiet_timeout)
        print(
            f"-- {server.label}: {len(bodies):,} distinct requests "
            f"(machine {quiet['busy_percent_before']:.0f}% busy after waiting "
            f"{quiet['waited_s']:.0f} s)",
            file=sys.stderr,
        )
        sessions0 = asyncio.run(db_sessions(db))
        server.start(work)
        try:
            result = measure(
                server,
                bodies=bodies,
                headers=headers,
                expect=expect,
                args=args,
                work=work,
                seconds=seconds,
                database=db.name,
                profile_to=profile_to,
            )
            result |= write_batches(server)
        finally:
            server.stop()
        # New PostgreSQL sessions on the bench database during the run (pool churn shows
        # here).
        result["db_sessions_opened"] = asyncio.run(db_sessions(db)) - sessions0
        result["machine_before"] = quiet
        print(
            f"   {result['rps']:,.0f} req/s, p50 {result['p50_ms']:.2f} ms, "
            f"p99 {result['p99_ms']:.2f} ms, unexpected {result['unexpected_total']}, "
            f"reused {result['reused']}, other CPU {result['other_cpu_percent']:.0f}%, "
            f"db sessions opened {result['db_sessions_opened']}"
            + (
                f", {result['write_batch_mean']:.1f} callbacks per write statement"
                if "write_batch_mean" in result
                else ""
            ),
            file=sys.stderr,
        )
        return result

    # a. echo: the HTTP ceiling (reads nothing from the database, so it consumes no rows).
    asyncio.run(settle(db))
    echo_bodies = [callback_body(db, item) for item in db.pool[: args.leads]]
    echo = one(baseline_server("echo", "echo"), echo_bodies, None, args.seconds)
    runs.append({"label": "echo (Starlette, HTTP ceiling)", "result": echo})

    # b. raw asyncpg: the essential database work.
    raw_bound = min(echo["rps"], MAX_RAW_RATE)
    asyncio.run(ensure(db, needed(raw_bound, args.seconds)))
    raw_bodies = [callback_body(db, i) for i in db.take(needed(raw_bound, args.seconds))]
    raw = one(baseline_server("raw asyncpg", "raw"), raw_bodies, EXPECT_APPLIED, args.seconds)
    runs.append({"label": "raw asyncpg (Starlette + asyncpg pool)", "result": raw})

    # c. clayloop, WARNING then INFO.
    cl_bound = raw["rps"] * 1.2
    clayloop_results: dict[str, dict[str, Any]] = {}
    for level in args.levels:
        count = needed(cl_bound, args.seconds)
        asyncio.run(ensure(db, count))
        bodies = [callback_body(db, i) for i in db.take(count)]
        label = f"clayloop serve, log level {level}"
        server = clayloop_server(label, level, f"clayloop-{level.lower()}")
        res = one(server, bodies, EXPECT_APPLIED, args.seconds)
        if level == "INFO":
            res["log_lines"] = sum(
                1 for line in server.log.read_text(errors="replace").splitlines() if line
            )
        clayloop_results[level] = res
        runs.append({"label": label, "result": res})
        cl_bound = max(res["rps"] * 1.5, 200.0)

    # d. one more clayloop run under py-spy (not in the table: the profiler costs throughput).
    profile: dict[str, Any] | None = None
    if args.profile_seconds > 0:
        count = needed(cl_bound, args.profile_seconds)
        asyncio.run(ensure(db, count))
        bodies = [callback_body(db, i) for i in db.take(count)]
        raw_profile = RESULTS / f"callback-{args.stamp}-profile.txt"
        server = clayloop_server(
            f"clayloop serve under py-spy ({args.profile_level})", args.profile_level, "profiled"
        )
        res = one(server, bodies, EXPECT_APPLIED, args.profile_seconds, profile_to=raw_profile)
        if raw_profile.exists():
            profile = summarize_profile(raw_profile) | {
                "raw_file": str(raw_profile.relative_to(ROOT)),
                "run": res,
                "py_spy": "record --rate 100 --nonblocking --format raw (collapsed stacks)",
            }
        else:
            print("py-spy wrote no profile", file=sys.stderr)

    # e. the database work of one callback, four ways, in-process and sequential (CPU cost).
    variants: dict[str, Any] | None = None
    if args.variants > 0:
        per = args.variants + 100
        asyncio.run(ensure(db, per * len(VARIANT_NAMES)))
        quiet = wait_for_quiet(args.quiet_below, args.quiet_timeout)
        spec = {
            "url": db.url,
            "token_key": db.token_key,
            "slices": {name: db.take(per) for name in VARIANT_NAMES},
        }
        spec_path = work / "variants.json"
        spec_path.write_text(json.dumps(spec))
        print(f"-- statement variants: {args.variants:,} callbacks each", file=sys.stderr)
        out = subprocess.run(
            [sys.executable, VARIANTS, str(spec_path)],
            capture_output=True,
            text=True,
            env=child_env({}),
            cwd=ROOT,
            check=False,
        )
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines:
            print(f"   variants failed: {out.stderr[-500:]}", file=sys.stderr)
        else:
            variants = json.loads(lines[-1]) | {"machine_before": quiet}

    outcomes = asyncio.run(count_applied(db))
    return {
        "runs": runs,
        "raw_rps": raw["rps"],
        "clayloop": clayloop_results,
        "profile": profile,
        "variants": variants,
        "journal_outcomes": outcomes,
    }


def verdict(result: dict[str, Any]) -> list[str]:
    raw_rps = result["raw_rps"]
    lines = []
    for level, res in result["clayloop"].items():
        ratio = res["rps"] / raw_rps if raw_rps else 0.0
        ok_ratio = ratio >= TARGET_RATIO
        ok_p99 = res["p99_ms"] < TARGET_P99_MS
        ok_all = res["unexpected_total"] == 0 and res["reused"] == 0
        lines.append(
            f"clayloop ({level}): {ratio:.0%} of raw asyncpg "
            f"({'meets' if ok_ratio else 'MISSES'} >= {TARGET_RATIO:.0%}), "
            f"p99 {res['p99_ms']:.1f} ms "
            f"({'meets' if ok_p99 else 'MISSES'} < {TARGET_P99_MS:.0f}), "
            f"{'every answer applied' if ok_all else 'NOT every answer applied'} "
            f"({res['answers_total'] - res['unexpected_total']:,} of {res['answers_total']:,})"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per server")
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections")
    parser.add_argument(
        "--database-admin",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL database to connect to for CREATE/DROP DATABASE",
    )
    parser.add_argument("--leads", type=int, default=40_000, help="leads loaded up front")
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=15.0,
        help="before each run, wait until the machine is under this %% busy (shared machines)",
    )
    parser.add_argument(
        "--quiet-timeout", type=float, default=300.0, help="longest wait for a quiet machine"
    )
    parser.add_argument(
        "--variants",
        type=int,
        default=1000,
        help="callbacks per statement variant, in-process (0: skip)",
    )
    parser.add_argument(
        "--levels",
        type=lambda text: [part.strip().upper() for part in text.split(",") if part.strip()],
        default=["WARNING", "INFO"],
        help="clayloop runs, one per log level, in this order (default WARNING,INFO)",
    )
    parser.add_argument(
        "--clayloop-env",
        action="append",
        default=[],
        type=lambda text: tuple(text.split("=", 1)),
        metavar="CLAYLOOP_NAME=VALUE",
        help="extra setting for the clayloop server (repeatable), e.g. a pool size",
    )
    parser.add_argument(
        "--profile-level", default="WARNING", help="log level of the profiled clayloop run"
    )
    parser.add_argument(
        "--profile-seconds", type=float, default=10.0, help="py-spy run length (0: no profile)"
    )
    args = parser.parse_args()
    args.stamp = stamp()
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="clayloop-bench-callback-"))
    print(f"creating a throwaway database on {args.database_admin}", file=sys.stderr)
    db = asyncio.run(create_database(args.database_admin))
    db.token_key = "bench-token-key-" + uuid.uuid4().hex
    try:
        upgrade(db.url)
        asyncio.run(create_bench_workspace(db))
        asyncio.run(add_leads(db, args.leads))
        print(
            f"loaded {db.loaded:,} leads (+{2 * db.loaded:,} requests) in "
            f"{db.load_seconds:.1f} s into {db.name}",
            file=sys.stderr,
        )
        result = run_all(args, db, work)
        pg_version = asyncio.run(pg_server_version(db))
    finally:
        asyncio.run(drop_database(db))
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "benchmark": "callback",
        "started": args.stamp,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "settings": {
            "seconds": args.seconds,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "leads_loaded": db.loaded,
        },
        "machine": machine() | {"postgresql": pg_version},
        "targets": {"ratio_to_raw_asyncpg": TARGET_RATIO, "p99_ms": TARGET_P99_MS},
    } | result
    result["verdict"] = verdict(result)
    out = RESULTS / f"callback-{args.stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(table(result["runs"], result["raw_rps"]))
    print()
    for line in result["verdict"]:
        print(line)
    if result["profile"]:
        prof = result["profile"]
        print(
            f"\nprofile ({prof['samples']} samples, {prof['run']['rps']:,.0f} req/s under py-spy)"
        )
        for name, pct in prof["self_by_layer_percent"].items():
            print(f"  {pct:5.1f}%  {name}")
        print("  inclusive:")
        for name, pct in prof["inclusive_percent"].items():
            print(f"  {pct:5.1f}%  {name}")
    if result["variants"]:
        print("\ndatabase work of one callback, sequential, in-process (CPU ms / wall ms):")
        for name in VARIANT_NAMES:
            v = result["variants"].get(name, {})
            if "cpu_ms" in v:
                print(f"  {name:14s} {v['cpu_ms']:.3f} / {v['wall_ms']:.3f}")
            else:
                print(f"  {name:14s} {v.get('error', 'n/a')}")
    print(f"\nwrote {out.relative_to(ROOT)}")


async def pg_server_version(db: Database) -> str:
    conn = await asyncpg.connect(db.url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
