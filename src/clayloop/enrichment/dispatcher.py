"""The dispatcher: claim due requests within every limit, send them, record Clay's answer.

Claiming happens per target in one short transaction that locks, in this order,
the target row, its token buckets (the target's own and its Clay account's) and
the day's usage rows; it takes tokens, reserves budget and submissions, and
leases the requests it claims (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any
number of workers share the work and never the same request). Reservations a
failed send did not use are given back. Budgets and rate limits therefore hold
across workers, and a crash costs at most the rows that were in flight.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clayloop import models as m
from clayloop.clay.client import SendResult
from clayloop.clay.rows import build_row
from clayloop.config import Settings
from clayloop.enrichment.policy import (
    BUDGET_EXHAUSTED,
    MISSING_REQUIRED,
    NO_TARGET,
    TARGET_PAUSED,
    missing_required,
)
from clayloop.kit.clock import utcnow
from clayloop.kit.ids import callback_token
from clayloop.kit.sqlutil import insert_ignore, locks
from clayloop.ops.alerts import raise_alert
from clayloop.workspaces.schemas import WorkspaceSettings, load_settings

R = m.enrichment_request
L = m.lead
T = m.clay_target
B = m.rate_bucket
U = m.usage_daily

HOLD_SECONDS = 60.0
# Tokens are taken when a request is claimed, and the row reaches Clay later; a stalled
# event loop or a busy machine can bunch arrivals beyond what the send alignment absorbs
# (worker.SEND_ALIGN_SECONDS). Each bucket keeps three tokens (300 ms at Clay's 10 rows/s)
# below the burst Clay allows: 3 rows per idle period, never a 429 from jitter.
HEADROOM_TOKENS = 3.0
DEFAULT_RETRY_AFTER = 2.0
LEAD_COLUMNS = (
    L.c.id,
    L.c.workspace_id,
    L.c.email,
    L.c.first_name,
    L.c.last_name,
    L.c.company_name,
    L.c.company_domain,
    L.c.title,
    L.c.linkedin_url,
    L.c.phone,
)


@dataclass(frozen=True)
class Claim:
    """A request leased to this worker, with everything needed to send it."""

    request_id: str
    lead_id: str
    workspace_id: str
    kind: str
    attempts: int
    target_id: str
    url: str
    auth_token: str | None
    cost: float
    bucket_keys: tuple[str, str]
    row: dict[str, Any]


@dataclass
class Bucket:
    """A token bucket as read from the database, refilled to ``now``."""

    key: str
    tokens: float
    updated_at: float
    blocked_until: float
    rate: float
    burst: float
    dirty: bool = False

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last update (never above the burst).

        The clock never moves back: a worker whose ``now`` is older than the bucket's (it
        waited for the lock, or a 429 set ``updated_at`` to the end of the block) earns
        nothing, and must not rewind ``updated_at``, or the next claimer is paid twice for
        the same interval.
        """
        elapsed = max(0.0, now - self.updated_at)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated_at = max(self.updated_at, now)
        self.dirty = True

    def available(self, now: float) -> float:
        """Whole tokens that may be taken now."""
        return 0.0 if now < self.blocked_until else math.floor(self.tokens)

    def wait(self, now: float) -> float:
        """Seconds until one token is available."""
        if now < self.blocked_until:
            return self.blocked_until - now
        return max(0.0, (1.0 - self.tokens) / self.rate)


@dataclass
class ClaimRound:
    """What one claiming pass did."""

    claims: list[Claim] = field(default_factory=list)
    skipped: int = 0
    wake_in: float = 1.0
    # Leads whose rollup to refresh once this pass has committed (refresh_rollup).
    rollups: list[str] = field(default_factory=list)


def group_key(target: Any) -> str:
    """The Clay-account bucket a target draws from."""
    return f"group:{target.rate_group}" if target.rate_group else f"workspace:{target.workspace_id}"


def day_of(now: datetime) -> str:
    """The UTC day budgets count in."""
    return now.date().isoformat()


def next_midnight(now: datetime) -> datetime:
    """The start of the next UTC day (when daily budgets reset)."""
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return start + timedelta(days=1)


async def _buckets(
    conn: AsyncConnection, specs: dict[str, tuple[float, float]], now: float
) -> dict[str, Bucket]:
    await insert_ignore(
        conn,
        B,
        [
            {"key": k, "tokens": burst, "updated_at": now, "blocked_until": 0.0}
            for k, (_, burst) in specs.items()
        ],
    )
    query = sa.select(B).where(B.c.key.in_(sorted(specs))).order_by(B.c.key)
    if locks(conn):
        query = query.with_for_update()
    out: dict[str, Bucket] = {}
    for row in await conn.execute(query):
        rate, burst = specs[row.key]
        capacity = max(1.0, burst - HEADROOM_TOKENS)
        bucket = Bucket(row.key, row.tokens, row.updated_at, row.blocked_until, rate, capacity)
        bucket.refill(now)
        out[row.key] = bucket
    return out


async def _usage(
    conn: AsyncConnection, keys: list[tuple[str, str]], day: str
) -> dict[tuple[str, str], Any]:
    await insert_ignore(
        conn,
        U,
        [
            {"scope": s, "scope_id": i, "day": day, "rows": 0, "cost": 0.0, "extra_sends": 0}
            for s, i in keys
        ],
    )
    query = (
        sa.select(U)
        .where(U.c.day == day, sa.tuple_(U.c.scope, U.c.scope_id).in_(keys))
        .order_by(U.c.scope, U.c.scope_id)
    )
    if locks(conn):
        query = query.with_for_update()
    return {(r.scope, r.scope_id): r for r in await conn.execute(query)}


def _serving_target(targets: list[Any], usage: dict[tuple[str, str], Any]) -> Any | None:
    """The first active target of a (workspace, kind) with submissions and budget left."""
    for target in targets:
        if target.state != "active" or target.submissions_used >= target.submission_limit:
            continue
        used = usage.get(("target", target.id))
        if target.daily_cap is not None and used is not None and used.rows >= target.daily_cap:
            continue
        return target
    return None


async def active_targets(conn: AsyncConnection) -> list[Any]:
    """Every target, in the order takeover uses them (priority, then age)."""
    return list(
        (await conn.execute(sa.select(T).order_by(T.c.priority, T.c.created_at, T.c.id))).all()
    )


async def claim_for_target(
    conn: AsyncConnection,
    *,
    target_id: str,
    settings: Settings,
    token_key: str,
    worker_id: str,
    now: datetime,
    max_claims: int,
) -> ClaimRound:
    """Claim what one target may send now; runs in the caller's (short) transaction."""
    result = ClaimRound()
    query = sa.select(T).where(T.c.id == target_id)
    if locks(conn):
        query = query.with_for_update()
    target = (await conn.execute(query)).first()
    if target is None or target.state != "active":
        return result
    if target.submissions_used >= target.submission_limit:
        return result
    ws_row = (
        await conn.execute(
            sa.select(m.workspace.c.settings).where(m.workspace.c.id == target.workspace_id)
        )
    ).first()
    ws = load_settings(ws_row.settings if ws_row else None)
    # Only the first usable target of a (workspace, kind) serves it: takeover, not sharing.
    siblings = (
        await conn.execute(
            sa.select(T)
            .where(T.c.workspace_id == target.workspace_id, T.c.kind == target.kind)
            .order_by(T.c.priority, T.c.created_at, T.c.id)
        )
    ).all()
    day = day_of(now)
    usage = await _usage(
        conn,
        [("workspace", target.workspace_id)] + [("target", t.id) for t in siblings],
        day,
    )
    serving = _serving_target(list(siblings), usage)
    if serving is None or serving.id != target.id:
        return result
    ws_used = usage[("workspace", target.workspace_id)]
    t_used = usage[("target", target.id)]
    budget = _budget_left(ws, target, ws_used, t_used)
    if budget <= 0:
        return result
    epoch = now.timestamp()
    gkey = group_key(target)
    tkey = f"target:{target.id}"
    buckets = await _buckets(
        conn,
        {tkey: (target.rate, float(target.burst)), gkey: (ws.clay_rate, float(ws.clay_burst))},
        epoch,
    )
    tokens = min(buckets[tkey].available(epoch), buckets[gkey].available(epoch))
    room = int(min(tokens, budget, target.submission_limit - target.submissions_used, max_claims))
    result.wake_in = max(buckets[tkey].wait(epoch), buckets[gkey].wait(epoch), 0.01)
    if room <= 0:
        await _save_buckets(conn, buckets.values())
        return result
    due = (
        sa.select(R.c.id.label("request_id"), R.c.kind, R.c.attempts, *LEAD_COLUMNS)
        .join(L, L.c.id == R.c.lead_id)
        .where(
            R.c.status == "queued",
            R.c.next_attempt_at <= now,
            R.c.workspace_id == target.workspace_id,
            R.c.kind == target.kind,
        )
        .order_by(R.c.next_attempt_at, R.c.id)
        .limit(room)
    )
    if locks(conn):
        due = due.with_for_update(of=R, skip_locked=True)
    required = list(target.required_fields or []) or list(ws.required_fields)
    lease_until = now + timedelta(seconds=settings.lease_seconds)
    skipped_leads: list[str] = []
    claimed_rows: list[dict[str, Any]] = []
    for row in await conn.execute(due):
        lead = {c.name: getattr(row, c.name) for c in LEAD_COLUMNS}
        payload = build_row(
            request_id=row.request_id,
            lead=lead,
            kind=row.kind,
            callback_url=settings.callback_url,
            callback_token=callback_token(token_key, row.request_id),
        )
        missing = missing_required(payload, required)
        if missing is not None:
            await conn.execute(
                sa.update(R)
                .where(R.c.id == row.request_id)
                .values(
                    status="skipped",
                    reason=f"{MISSING_REQUIRED}:{missing}",
                    completed_at=now,
                    updated_at=now,
                )
            )
            skipped_leads.append(row.id)
            result.skipped += 1
            continue
        claimed_rows.append({"rid": row.request_id})
        result.claims.append(
            Claim(
                request_id=row.request_id,
                lead_id=row.id,
                workspace_id=row.workspace_id,
                kind=row.kind,
                attempts=row.attempts + 1,
                target_id=target.id,
                url=target.url,
                auth_token=target.auth_token,
                cost=target.cost_per_row,
                bucket_keys=(tkey, gkey),
                row=payload,
            )
        )
    n = len(result.claims)
    if n:
        await conn.execute(
            sa.update(R)
            .where(R.c.id == sa.bindparam("rid"))
            .values(
                status="sending",
                reason=None,
                target_id=target.id,
                attempts=R.c.attempts + 1,
                lease_until=lease_until,
                lease_owner=worker_id,
                updated_at=now,
            ),
            claimed_rows,
        )
        for bucket in buckets.values():
            bucket.tokens -= n
        await conn.execute(
            sa.update(T)
            .where(T.c.id == target.id)
            .values(submissions_used=T.c.submissions_used + n)
        )
        cost = n * target.cost_per_row
        await conn.execute(
            sa.update(U)
            .where(U.c.day == day, U.c.scope == "target", U.c.scope_id == target.id)
            .values(rows=U.c.rows + n, cost=U.c.cost + cost)
        )
        await conn.execute(
            sa.update(U)
            .where(U.c.day == day, U.c.scope == "workspace", U.c.scope_id == target.workspace_id)
            .values(rows=U.c.rows + n, cost=U.c.cost + cost)
        )
    await _save_buckets(conn, buckets.values())
    result.rollups = skipped_leads
    return result


def _budget_left(ws: WorkspaceSettings, target: Any, ws_used: Any, t_used: Any) -> float:
    """How many more rows today's budgets allow for this target."""
    left = math.inf
    if target.daily_cap is not None:
        left = min(left, target.daily_cap - t_used.rows)
    if ws.daily_cap is not None:
        left = min(left, ws.daily_cap - ws_used.rows)
    if ws.daily_cost_cap is not None and target.cost_per_row > 0:
        left = min(
            left, math.floor((ws.daily_cost_cap - ws_used.cost) / target.cost_per_row + 1e-9)
        )
    return left


async def _save_buckets(conn: AsyncConnection, buckets: Any) -> None:
    rows = [
        {"k": b.key, "t": b.tokens, "u": b.updated_at, "bu": b.blocked_until}
        for b in buckets
        if b.dirty
    ]
    if rows:
        await conn.execute(
            sa.update(B)
            .where(B.c.key == sa.bindparam("k"))
            .values(
                tokens=sa.bindparam("t"),
                updated_at=sa.bindparam("u"),
                blocked_until=sa.bindparam("bu"),
            ),
            rows,
        )


async def hold_unservable(conn: AsyncConnection, *, now: datetime) -> int:
    """Give every due request that no target can take now its reason, and hold it back.

    no_target: the workspace has no target of that kind (or all are used up);
    target_paused: it has some, all paused; budget_exhausted: caps reached until midnight.
    """
    pairs = (
        await conn.execute(
            sa.select(R.c.workspace_id, R.c.kind)
            .where(R.c.status == "queued", R.c.next_attempt_at <= now)
            .group_by(R.c.workspace_id, R.c.kind)
        )
    ).all()
    if not pairs:
        return 0
    targets = await active_targets(conn)
    day = day_of(now)
    usage = {
        (r.scope, r.scope_id): r for r in await conn.execute(sa.select(U).where(U.c.day == day))
    }
    held = 0
    for workspace_id, kind in pairs:
        mine = [t for t in targets if t.workspace_id == workspace_id and t.kind == kind]
        reason: str | None = None
        until = now + timedelta(seconds=HOLD_SECONDS)
        if not mine:
            reason = NO_TARGET
        elif all(t.state != "active" for t in mine):
            reason = TARGET_PAUSED
        elif all(t.submissions_used >= t.submission_limit for t in mine if t.state == "active"):
            reason = NO_TARGET
        else:
            ws_row = (
                await conn.execute(
                    sa.select(m.workspace.c.settings).where(m.workspace.c.id == workspace_id)
                )
            ).first()
            ws = load_settings(ws_row.settings if ws_row else None)
            serving = _serving_target(mine, usage)
            ws_used = usage.get(("workspace", workspace_id))
            if serving is None or (
                ws_used is not None
                and _budget_left(ws, serving, ws_used, usage.get(("target", serving.id), _Zero()))
                <= 0
            ):
                reason, until = BUDGET_EXHAUSTED, next_midnight(now)
        if reason is None:
            continue
        result = await conn.execute(
            sa.update(R)
            .where(
                R.c.status == "queued",
                R.c.next_attempt_at <= now,
                R.c.workspace_id == workspace_id,
                R.c.kind == kind,
            )
            .values(reason=reason, next_attempt_at=until, updated_at=now)
        )
        held += int(result.rowcount or 0)
    return held


class _Zero:
    rows = 0
    cost = 0.0


def backoff_seconds(attempts: int, settings: Settings, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter (50 to 150 percent) after ``attempts`` failed sends."""
    base = min(
        settings.backoff_max_seconds, settings.backoff_base_seconds * 2 ** max(0, attempts - 1)
    )
    return float(base * (0.5 + (rng or random).random()))


async def record_result(
    conn: AsyncConnection,
    claim: Claim,
    result: SendResult,
    *,
    settings: Settings,
    worker_id: str,
    now: datetime,
) -> str:
    """Write what Clay answered for one claimed request; returns the request's new status.

    A request that became ``failed`` changes its lead's rollup: the caller refreshes it
    (``refresh_rollup``) once this transaction has committed.
    """
    mine = sa.and_(
        R.c.id == claim.request_id, R.c.status == "sending", R.c.lease_owner == worker_id
    )
    release = {"lease_until": None, "lease_owner": None, "updated_at": now}
    if result.verdict == "sent":
        # A callback may already have closed the request; only 'sending' becomes 'sent'.
        await conn.execute(
            sa.update(R)
            .where(R.c.id == claim.request_id)
            .values(
                status=sa.case((mine, "sent"), else_=R.c.status),
                sent_at=now,
                send_count=R.c.send_count + 1,
                last_error=None,
                lease_until=sa.case((mine, None), else_=R.c.lease_until),
                lease_owner=sa.case((mine, None), else_=R.c.lease_owner),
                updated_at=now,
            )
        )
        await conn.execute(
            sa.update(T).where(T.c.id == claim.target_id).values(last_success_at=now)
        )
        return "sent"
    if not result.maybe_delivered:
        await _refund(conn, claim, now)
    else:
        await conn.execute(
            sa.update(R).where(R.c.id == claim.request_id).values(send_count=R.c.send_count + 1)
        )
    error = f"{result.status or '-'} {result.message or ''}".strip()[:500]
    await conn.execute(
        sa.update(T).where(T.c.id == claim.target_id).values(last_error_at=now, last_error=error)
    )
    if result.verdict == "rate_limited":
        wait = result.retry_after if result.retry_after is not None else DEFAULT_RETRY_AFTER
        await _block_buckets(conn, claim.bucket_keys, now.timestamp() + wait)
        await conn.execute(
            sa.update(R)
            .where(mine)
            .values(
                status="queued",
                attempts=R.c.attempts - 1,
                next_attempt_at=now + timedelta(seconds=wait),
                last_error=error,
                **release,
            )
        )
        return "queued"
    if result.verdict == "target_broken":
        reason = f"Clay answered {result.status}: {result.message or 'no message'}"[:300]
        await conn.execute(
            sa.update(T)
            .where(T.c.id == claim.target_id, T.c.state == "active")
            .values(state="paused", paused_reason=reason)
        )
        await raise_alert(
            conn,
            "target_paused",
            f"target {claim.target_id} ({claim.kind}) was paused: {reason}. Its leads stay "
            "queued; fix the webhook (token, URL, submission limit) and resume it.",
            workspace_id=claim.workspace_id,
            target_id=claim.target_id,
        )
        await conn.execute(
            sa.update(R)
            .where(mine)
            .values(
                status="queued",
                attempts=R.c.attempts - 1,
                reason=TARGET_PAUSED,
                next_attempt_at=now,
                last_error=error,
                **release,
            )
        )
        return "queued"
    if result.verdict == "rejected":
        await _fail(conn, mine, f"rejected:{result.status}", error, now)
        return "failed"
    if claim.attempts >= settings.max_send_attempts:
        await _fail(conn, mine, "send_failed", error, now)
        return "failed"
    await conn.execute(
        sa.update(R)
        .where(mine)
        .values(
            status="queued",
            next_attempt_at=now + timedelta(seconds=backoff_seconds(claim.attempts, settings)),
            last_error=error,
            **release,
        )
    )
    return "queued"


async def _fail(conn: AsyncConnection, mine: Any, reason: str, error: str, now: datetime) -> None:
    await conn.execute(
        sa.update(R)
        .where(mine)
        .values(
            status="failed",
            reason=reason,
            last_error=error,
            completed_at=now,
            lease_until=None,
            lease_owner=None,
            updated_at=now,
        )
    )


async def _refund(conn: AsyncConnection, claim: Claim, now: datetime) -> None:
    """Give back the submission and budget a send reserved but did not use."""
    day = day_of(now)
    await conn.execute(
        sa.update(T)
        .where(T.c.id == claim.target_id, T.c.submissions_used > 0)
        .values(submissions_used=T.c.submissions_used - 1)
    )
    for scope, scope_id in (("target", claim.target_id), ("workspace", claim.workspace_id)):
        await conn.execute(
            sa.update(U)
            .where(U.c.day == day, U.c.scope == scope, U.c.scope_id == scope_id, U.c.rows > 0)
            .values(rows=U.c.rows - 1, cost=U.c.cost - claim.cost)
        )


async def _block_buckets(conn: AsyncConnection, keys: tuple[str, str], until: float) -> None:
    await conn.execute(
        sa.update(B)
        .where(B.c.key.in_(keys), B.c.blocked_until < until)
        .values(blocked_until=until, tokens=0.0, updated_at=until)
    )


async def release_claims(conn: AsyncConnection, claims: list[Claim], *, worker_id: str) -> None:
    """Put claimed-but-unsent requests back in the queue (graceful shutdown)."""
    now = utcnow()
    for claim in claims:
        updated = await conn.execute(
            sa.update(R)
            .where(
                R.c.id == claim.request_id, R.c.status == "sending", R.c.lease_owner == worker_id
            )
            .values(
                status="queued",
                attempts=R.c.attempts - 1,
                next_attempt_at=now,
                lease_until=None,
                lease_owner=None,
                updated_at=now,
            )
        )
        if updated.rowcount:
            await _refund(conn, claim, now)
