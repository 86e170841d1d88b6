"""The worker: dispatcher, sweeper and monitors in one asyncio process.

Run it inside ``clayloop serve`` or alone with ``clayloop worker``; any number may
run against one PostgreSQL. Stopping (SIGTERM/SIGINT) stops claiming, lets the
sends in flight finish, and puts back anything claimed but not sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid

import anyio.lowlevel
import httpx
from sqlalchemy.exc import DBAPIError, OperationalError

from clayloop.clay.client import post_row
from clayloop.enrichment.dispatcher import (
    Claim,
    active_targets,
    claim_for_target,
    hold_unservable,
    record_result,
    release_claims,
)
from clayloop.enrichment.requests import refresh_rollup
from clayloop.enrichment.sweeper import sweep
from clayloop.kit import metrics
from clayloop.kit.clock import utcnow
from clayloop.kit.log import get_logger
from clayloop.kit.runtime import Runtime
from clayloop.ops.monitors import check_queue, check_targets, purge_journal

log = get_logger("worker")

# How long stopping waits for a dispatch, sweep or monitor pass to finish before cancelling it.
LOOP_STOP_SECONDS = 10.0

# A claimed row leaves this long after its tokens were taken (the claim's ``now``), not as
# soon as the claim commits. Clay counts rows when they arrive, the buckets count them when
# they are claimed, and the delay in between is uneven: the claim transaction, a cold
# connection or a busy event loop hold some rows back more than others (the first burst
# after start-up by 100-180 ms on a 2-core machine), and a burst that leaves late followed by
# rows that leave on time reaches Clay bunched, which the one token of headroom cannot cover
# (bench/dispatch.py saw a 429 right after the first burst). A fixed delay absorbs that
# jitter up to this many seconds, so rows reach Clay at the pace they were claimed at
# (with the buckets' headroom: 0.8 s in all at Clay's default rate).
SEND_ALIGN_SECONDS = 0.5


class Worker:
    """One worker process's loops, sharing the runtime's engine."""

    def __init__(self, runtime: Runtime, worker_id: str | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._unsent: dict[str, Claim] = {}
        self._http: httpx.AsyncClient | None = None
        self._sem = asyncio.Semaphore(self.settings.send_concurrency)

    async def start(self) -> None:
        """Start the loops in the background."""
        self._http = httpx.AsyncClient(
            timeout=self.settings.send_timeout_seconds,
            limits=httpx.Limits(max_connections=self.settings.send_concurrency),
            follow_redirects=False,
        )
        # httpx's first request imports anyio's asyncio backend: ~70 ms with the event loop
        # blocked, which would land after SEND_ALIGN_SECONDS, in the middle of the first burst.
        await anyio.lowlevel.checkpoint()
        self._tasks = [
            asyncio.create_task(self._loop("dispatch", self._dispatch_once), name="dispatch"),
            asyncio.create_task(
                self._every("sweep", self.settings.sweep_interval_seconds, self._sweep_once),
                name="sweep",
            ),
            asyncio.create_task(
                self._every("monitor", self.settings.monitor_interval_seconds, self._monitor_once),
                name="monitor",
            ),
        ]
        log.info("worker_started", worker_id=self.worker_id)

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming, wait for sends in flight, release what was claimed and not sent."""
        self._stopping.set()
        # The loops notice the flag between passes. Cancelling one mid-transaction can strand
        # its connection with the transaction open (on SQLite: the database's write lock,
        # held until the process exits), so cancel only a pass that will not finish.
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=LOOP_STOP_SECONDS)
            for task in stuck:
                task.cancel()
            for task in stuck:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._inflight:
            await asyncio.wait(
                self._inflight, timeout=grace or self.settings.send_timeout_seconds + 5
            )
        if self._unsent:
            async with self.runtime.engine.begin() as conn:
                await release_claims(conn, list(self._unsent.values()), worker_id=self.worker_id)
            log.info("claims_released", count=len(self._unsent))
        if self._http is not None:
            await self._http.aclose()
        log.info("worker_stopped", worker_id=self.worker_id)

    async def run_until_stopped(self) -> None:
        """Run until :meth:`request_stop` is called (signal handlers call it)."""
        await self.start()
        await self._stopping.wait()
        await self.stop()

    def request_stop(self) -> None:
        """Ask the worker to stop (safe from a signal handler)."""
        self._stopping.set()

    async def _loop(self, name: str, once: object) -> None:
        assert callable(once)
        while not self._stopping.is_set():
            try:
                wait = await once()
            except (OperationalError, DBAPIError, OSError) as exc:
                log.warning("worker_db_error", loop=name, error_type=type(exc).__name__)
                wait = 1.0
            except Exception as exc:
                log.error("worker_loop_error", loop=name, error_type=type(exc).__name__)
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=wait)

    async def _every(self, name: str, interval: float, once: object) -> None:
        assert callable(once)

        async def tick() -> float:
            await once()
            return interval

        await self._loop(name, tick)

    async def _dispatch_once(self) -> float:
        engine = self.runtime.engine
        async with engine.connect() as conn:
            targets = [t for t in await active_targets(conn) if t.state == "active"]
        wake = self.settings.worker_poll_seconds
        room = self.settings.send_concurrency - len(self._inflight)
        for target in targets:
            if room <= 0 or self._stopping.is_set():
                break
            async with engine.begin() as conn:
                now = utcnow()
                round_ = await claim_for_target(
                    conn,
                    target_id=target.id,
                    settings=self.settings,
                    token_key=self.runtime.token_key,
                    worker_id=self.worker_id,
                    now=now,
                    max_claims=min(room, self.settings.dispatch_batch),
                )
            await self._refresh_rollups(round_.rollups)
            wake = min(wake, round_.wake_in)
            send_at = now.timestamp() + SEND_ALIGN_SECONDS
            for claim in round_.claims:
                self._unsent[claim.request_id] = claim
                task = asyncio.create_task(self._send(claim, send_at))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            room -= len(round_.claims)
        return max(0.005, wake)

    async def _send(self, claim: Claim, send_at: float = 0.0) -> None:
        assert self._http is not None
        delay = send_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        async with self._sem:
            self._unsent.pop(claim.request_id, None)
            started = time.perf_counter()
            result = await post_row(self._http, claim.url, claim.auth_token, claim.row)
            metrics.SENDS.labels(claim.kind, result.verdict).inc()
            for attempt in range(5):
                try:
                    async with self.runtime.engine.begin() as conn:
                        status = await record_result(
                            conn,
                            claim,
                            result,
                            settings=self.settings,
                            worker_id=self.worker_id,
                            now=utcnow(),
                        )
                    break
                except (OperationalError, DBAPIError) as exc:
                    # The row went out; losing its outcome would resend it after the lease.
                    log.warning("record_retry", attempt=attempt, error_type=type(exc).__name__)
                    await asyncio.sleep(0.2 * (attempt + 1))
            else:
                status = "unrecorded"
            if status == "failed":
                await self._refresh_rollups([claim.lead_id])
            log.info(
                "send",
                request_id=claim.request_id,
                lead_id=claim.lead_id,
                kind=claim.kind,
                target_id=claim.target_id,
                verdict=result.verdict,
                http_status=result.status,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )

    async def _refresh_rollups(self, lead_ids: list[str]) -> None:
        """Refresh leads' rollups after the transaction that closed their requests committed."""
        if not lead_ids:
            return
        try:
            async with self.runtime.engine.begin() as conn:
                await refresh_rollup(conn, lead_ids)
        except (OperationalError, DBAPIError) as exc:
            # The requests are right; the derived status is refreshed by their next change.
            log.warning("rollup_failed", leads=len(lead_ids), error_type=type(exc).__name__)

    async def _sweep_once(self) -> None:
        async with self.runtime.engine.begin() as conn:
            now = utcnow()
            swept = await sweep(conn, settings=self.settings, now=now)
            held = await hold_unservable(conn, now=now)
        await self._refresh_rollups(swept.rollups)
        if swept.leases_expired or swept.resent_after_timeout or swept.failed_after_timeout or held:
            log.info(
                "sweep",
                leases_expired=swept.leases_expired,
                resent_after_timeout=swept.resent_after_timeout,
                failed_after_timeout=swept.failed_after_timeout,
                held=held,
            )

    async def _monitor_once(self) -> None:
        async with self.runtime.engine.begin() as conn:
            now = utcnow()
            await check_targets(conn, settings=self.settings, now=now)
            await check_queue(conn, now=now)
            await purge_journal(conn, settings=self.settings, now=now)
