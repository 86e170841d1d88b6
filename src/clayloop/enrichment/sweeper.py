"""The sweeper: requests whose lease expired (a worker died) and callbacks that never came."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clayloop import models as m
from clayloop.config import Settings
from clayloop.enrichment.dispatcher import day_of
from clayloop.kit.sqlutil import insert_ignore

R = m.enrichment_request
U = m.usage_daily


@dataclass
class SweepResult:
    """What one sweep changed."""

    leases_expired: int = 0
    resent_after_timeout: int = 0
    failed_after_timeout: int = 0
    # Leads whose rollup to refresh once the sweep has committed (refresh_rollup).
    rollups: list[str] = field(default_factory=list)


async def sweep(conn: AsyncConnection, *, settings: Settings, now: datetime) -> SweepResult:
    """Requeue requests of dead workers; resend or fail requests whose callback never came."""
    result = SweepResult()
    # One statement finds and requeues: with several workers sweeping, a row another
    # sweeper already requeued (and a dispatcher claimed again, with a fresh lease) must
    # not be taken from its new owner, nor counted twice.
    expired = (
        await conn.execute(
            sa.update(R)
            .where(R.c.status == "sending", R.c.lease_until < now)
            .values(
                status="queued",
                reason="lease_expired",
                send_count=R.c.send_count + 1,
                next_attempt_at=now,
                lease_until=None,
                lease_owner=None,
                updated_at=now,
            )
            .returning(R.c.id, R.c.workspace_id)
        )
    ).all()
    if expired:
        # The dead worker may have delivered the row before dying: it is counted as a
        # possible send (send_count above, usage extra_sends here) so a duplicate is visible.
        day = day_of(now)
        per_ws: dict[str, int] = {}
        for row in expired:
            per_ws[row.workspace_id] = per_ws.get(row.workspace_id, 0) + 1
        await insert_ignore(
            conn,
            U,
            [
                {
                    "scope": "workspace",
                    "scope_id": w,
                    "day": day,
                    "rows": 0,
                    "cost": 0.0,
                    "extra_sends": 0,
                }
                for w in per_ws
            ],
        )
        for workspace_id, count in per_ws.items():
            await conn.execute(
                sa.update(U)
                .where(U.c.scope == "workspace", U.c.scope_id == workspace_id, U.c.day == day)
                .values(extra_sends=U.c.extra_sends + count)
            )
        result.leases_expired = len(expired)
    cutoff = now - timedelta(seconds=settings.callback_timeout_seconds)
    overdue = (
        await conn.execute(
            sa.select(R.c.id, R.c.lead_id, R.c.timeout_resends)
            .where(R.c.status == "sent", R.c.sent_at < cutoff)
            .limit(1000)
        )
    ).all()
    resend = [r.id for r in overdue if r.timeout_resends < settings.callback_timeout_resends]
    give_up = [r for r in overdue if r.timeout_resends >= settings.callback_timeout_resends]
    if resend:
        await conn.execute(
            sa.update(R)
            .where(R.c.id.in_(resend), R.c.status == "sent", R.c.sent_at < cutoff)
            .values(
                status="queued",
                reason="callback_timeout_resend",
                timeout_resends=R.c.timeout_resends + 1,
                attempts=0,
                next_attempt_at=now,
                updated_at=now,
            )
        )
        result.resent_after_timeout = len(resend)
    if give_up:
        await conn.execute(
            sa.update(R)
            .where(R.c.id.in_([r.id for r in give_up]), R.c.status == "sent", R.c.sent_at < cutoff)
            .values(status="failed", reason="callback_timeout", completed_at=now, updated_at=now)
        )
        result.rollups = [r.lead_id for r in give_up]
        result.failed_after_timeout = len(give_up)
    return result
