"""Monitors: turn every stall in the loop into a number (metrics) and an alert."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clayloop import models as m
from clayloop.config import Settings
from clayloop.kit import metrics
from clayloop.kit.clock import as_utc
from clayloop.ops.alerts import raise_alert, resolve_alerts

R = m.enrichment_request
T = m.clay_target

NEAR_LIMIT = 0.9
HELD_CODES = ("leads_held_no_target", "leads_held_target_paused")


async def check_targets(conn: AsyncConnection, *, settings: Settings, now: datetime) -> None:
    """Alert on targets near or at their lifetime submission limit, and on silent tables."""
    targets = (await conn.execute(sa.select(T))).all()
    stall_cutoff = now - timedelta(seconds=settings.callback_stall_seconds)
    stalled: dict[str, int] = {
        target_id: count
        for target_id, count in await conn.execute(
            sa.select(R.c.target_id, sa.func.count())
            .where(R.c.status == "sent", R.c.sent_at < stall_cutoff)
            .group_by(R.c.target_id)
        )
    }
    for t in targets:
        used = t.submissions_used / t.submission_limit if t.submission_limit else 0.0
        if used >= 1.0:
            await raise_alert(
                conn,
                "target_exhausted",
                f"target {t.id} ({t.kind}) used all {t.submission_limit} submissions Clay allows "
                "a webhook source; the next active target of this kind takes over. Create a new "
                "Clay webhook and add it with 'clayloop target add'.",
                workspace_id=t.workspace_id,
                target_id=t.id,
            )
        elif used >= NEAR_LIMIT:
            await raise_alert(
                conn,
                "target_near_limit",
                f"target {t.id} ({t.kind}) used {t.submissions_used} of {t.submission_limit} "
                "submissions (90%+); prepare a new Clay webhook for this kind.",
                workspace_id=t.workspace_id,
                target_id=t.id,
            )
        count = int(stalled.get(t.id, 0))
        if count:
            await raise_alert(
                conn,
                "callbacks_stalled",
                f"{count} row(s) sent to target {t.id} ({t.kind}) more than "
                f"{int(settings.callback_stall_seconds)} s ago got no callback. Check the Clay "
                "table's HTTP API action: its URL, and header names (no colon: 'Content-Type', "
                "not 'Content-Type:'); Clay shows the error in the action's cell.",
                workspace_id=t.workspace_id,
                target_id=t.id,
            )
        else:
            await resolve_alerts(conn, codes=("callbacks_stalled",), target_id=t.id)


async def check_queue(conn: AsyncConnection, *, now: datetime) -> None:
    """Publish request counts by status and reason, and alert on leads no target can take."""
    counts = (
        await conn.execute(
            sa.select(R.c.kind, R.c.status, R.c.reason, sa.func.count()).group_by(
                R.c.kind, R.c.status, R.c.reason
            )
        )
    ).all()
    metrics.REQUESTS_BY_STATUS.clear()
    for kind, status, reason, count in counts:
        metrics.REQUESTS_BY_STATUS.labels(kind, status, reason or "").set(count)
    oldest = (
        await conn.execute(
            sa.select(R.c.kind, sa.func.min(R.c.created_at))
            .where(R.c.status == "queued")
            .group_by(R.c.kind)
        )
    ).all()
    for kind in m.KINDS:
        metrics.OLDEST_QUEUED_SECONDS.labels(kind).set(0)
    for kind, created in oldest:
        created_at = as_utc(created)
        if created_at is not None:
            metrics.OLDEST_QUEUED_SECONDS.labels(kind).set((now - created_at).total_seconds())
    held = (
        await conn.execute(
            sa.select(R.c.workspace_id, R.c.kind, R.c.reason, sa.func.count())
            .where(R.c.status == "queued", R.c.reason.in_(("no_target", "target_paused")))
            .group_by(R.c.workspace_id, R.c.kind, R.c.reason)
        )
    ).all()
    for workspace_id, kind, reason, count in held:
        await raise_alert(
            conn,
            f"leads_held_{reason}",
            f"{count} {kind} lead(s) of workspace {workspace_id} wait because of {reason}: "
            "add or resume a target of this kind ('clayloop target list').",
            workspace_id=workspace_id,
        )
    # A hold that ended (a target was added or resumed) closes its alert.
    still_held = {(f"leads_held_{reason}", workspace_id) for workspace_id, _, reason, _ in held}
    opened = (
        await conn.execute(
            sa.select(m.alert.c.code, m.alert.c.workspace_id)
            .where(m.alert.c.code.in_(HELD_CODES), m.alert.c.resolved_at.is_(None))
            .distinct()
        )
    ).all()
    for code, workspace_id in opened:
        if (code, workspace_id) not in still_held:
            await resolve_alerts(conn, codes=(code,), workspace_id=workspace_id)
    alerts = (
        await conn.execute(
            sa.select(m.alert.c.code, sa.func.count())
            .where(m.alert.c.resolved_at.is_(None))
            .group_by(m.alert.c.code)
        )
    ).all()
    metrics.OPEN_ALERTS.clear()
    for code, count in alerts:
        metrics.OPEN_ALERTS.labels(code).set(count)


async def purge_journal(conn: AsyncConnection, *, settings: Settings, now: datetime) -> int:
    """Delete callback journal rows older than the retention period; returns how many."""
    cutoff = now - timedelta(days=settings.callback_journal_retention_days)
    result = await conn.execute(
        sa.delete(m.callback_event).where(m.callback_event.c.received_at < cutoff)
    )
    return int(result.rowcount or 0)
