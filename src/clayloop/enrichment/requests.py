"""Enrichment requests: opening them under the workspace policy, and the lead rollup."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clayloop import models as m
from clayloop.enrichment.policy import COOLDOWN, OPEN, lead_eligibility, rollup
from clayloop.kit.ids import new_id
from clayloop.leads.history import add_lead_event
from clayloop.workspaces.schemas import WorkspaceSettings


async def latest_requests(conn: AsyncConnection, lead_id: str) -> dict[str, Any]:
    """The latest request of each kind for a lead (rows), keyed by kind."""
    rows = await conn.execute(
        sa.select(m.enrichment_request)
        .where(m.enrichment_request.c.lead_id == lead_id)
        .order_by(m.enrichment_request.c.created_at, m.enrichment_request.c.id)
    )
    return pick_latest(rows)


NOT_TRIED = frozenset({"skipped", "cancelled"})


def pick_latest(rows: Iterable[Any]) -> dict[str, Any]:
    """Of a lead's requests in creation order, the one that represents each kind.

    An open request always represents its kind; otherwise the newest one does, except
    that a skip never hides an enriched result (a late success may upgrade a miss that
    a cooldown skip was recorded after).
    """
    latest: dict[str, Any] = {}
    for row in rows:
        current = latest.get(row.kind)
        keeps = current is not None and (
            current.status in OPEN or (current.status == "enriched" and row.status in NOT_TRIED)
        )
        if current is None or row.status in OPEN or not keeps:
            latest[row.kind] = row
    return latest


def pick_for_rollup(rows: Iterable[Any]) -> dict[str, Any]:
    """Of a lead's requests in creation order, the one whose status counts for each kind.

    Like :func:`pick_latest`, except that a skip recorded after a finished cycle (a
    cooldown after not_found) does not hide that cycle's result from the rollup.
    """
    chosen: dict[str, Any] = {}
    for row in rows:
        current = chosen.get(row.kind)
        if (
            current is None
            or row.status in OPEN
            or (current.status not in OPEN and row.status not in NOT_TRIED)
            or current.status in NOT_TRIED
        ):
            chosen[row.kind] = row
    return chosen


async def lead_rollup(conn: AsyncConnection, lead_id: str, has_email: bool) -> str:
    """``lead.enrichment_status`` as the lead's requests say now."""
    rows = await conn.execute(
        sa.select(m.enrichment_request.c.kind, m.enrichment_request.c.status)
        .where(m.enrichment_request.c.lead_id == lead_id)
        .order_by(m.enrichment_request.c.created_at, m.enrichment_request.c.id)
    )
    return rollup(has_email, [r.status for r in pick_for_rollup(rows).values()])


async def last_not_found(conn: AsyncConnection, lead_id: str) -> dict[str, datetime]:
    """When each kind last ended not_found for this lead (for the cooldown)."""
    rows = await conn.execute(
        sa.select(m.enrichment_request.c.kind, sa.func.max(m.enrichment_request.c.completed_at))
        .where(
            m.enrichment_request.c.lead_id == lead_id,
            m.enrichment_request.c.status == "not_found",
        )
        .group_by(m.enrichment_request.c.kind)
    )
    # max() keeps the column's type, so SQLite's text comes back as an aware datetime.
    return {kind: at for kind, at in rows if at is not None}


async def evaluate_lead(
    conn: AsyncConnection,
    lead: Mapping[str, Any],
    settings: WorkspaceSettings,
    *,
    now: datetime,
    source: str,
) -> str:
    """Open, skip or keep each kind's request for a lead, then store and return its rollup.

    An eligible lead with no open request gets a queued one; a queued request of a
    lead that stopped being eligible is skipped with the reason; an ineligible lead
    whose kind was never tried gets a skipped request recording why (once per reason,
    so re-evaluating is quiet).
    Requests already sending or sent are left alone: Clay has the row.
    """
    lead_id = lead["id"]
    latest = await latest_requests(conn, lead_id)
    misses = await last_not_found(conn, lead_id)
    for kind in m.KINDS:
        current = latest.get(kind)
        verdict = lead_eligibility(
            lead, kind, settings, last_not_found_at=misses.get(kind), now=now
        )
        if current is not None and current.status in OPEN:
            if not verdict.eligible and current.status == "queued":
                await _close(conn, current.id, "skipped", verdict.reason, now)
            continue
        if verdict.eligible:
            await _insert(conn, lead, kind, "queued", None, now)
            await add_lead_event(
                conn,
                lead_id=lead_id,
                workspace_id=lead["workspace_id"],
                now=now,
                event="request_opened",
                source=source,
                field=kind,
            )
            continue
        # Record why nothing is sent: for a kind never tried, a changed reason, or a
        # known miss in its cooldown. An enriched cycle already explains has_value, and
        # is kept as the kind's latest so the lead resource shows the result.
        if (
            current is None
            or (current.status == "skipped" and current.reason != verdict.reason)
            or (verdict.reason == COOLDOWN and current.status == "not_found")
        ):
            await _insert(conn, lead, kind, "skipped", verdict.reason, now)
    status = await lead_rollup(conn, lead_id, bool(lead.get("email")))
    if status != lead.get("enrichment_status"):
        await conn.execute(
            sa.update(m.lead).where(m.lead.c.id == lead_id).values(enrichment_status=status)
        )
    return status


async def _insert(
    conn: AsyncConnection,
    lead: Mapping[str, Any],
    kind: str,
    status: str,
    reason: str | None,
    now: datetime,
) -> None:
    await conn.execute(
        sa.insert(m.enrichment_request).values(
            id=new_id(),
            workspace_id=lead["workspace_id"],
            lead_id=lead["id"],
            kind=kind,
            status=status,
            reason=reason,
            attempts=0,
            send_count=0,
            timeout_resends=0,
            next_attempt_at=now if status == "queued" else None,
            completed_at=now if status not in OPEN else None,
            created_at=now,
            updated_at=now,
        )
    )


async def _close(
    conn: AsyncConnection, request_id: str, status: str, reason: str | None, now: datetime
) -> None:
    await conn.execute(
        sa.update(m.enrichment_request)
        .where(m.enrichment_request.c.id == request_id)
        .values(
            status=status,
            reason=reason,
            completed_at=now,
            updated_at=now,
            lease_until=None,
            lease_owner=None,
        )
    )


async def refresh_rollup(conn: AsyncConnection, lead_ids: Iterable[str]) -> None:
    """Recompute ``lead.enrichment_status`` for leads whose requests changed outside a callback.

    Run it in a transaction of its own, once the transaction that changed the requests
    has committed. It takes each lead's row lock, as a callback does, before reading
    the lead's requests: a callback that read them before that commit has then written
    its (possibly stale) rollup already, and this one reads what is current, so the
    last rollup stored is right. Inside the changing transaction the lead's lock would
    come after the request rows' locks, the reverse of a callback's order (a deadlock),
    and without the lock a callback's stale rollup could be the last one written.
    """
    for lead_id in sorted(set(lead_ids)):
        email = (
            await conn.execute(
                sa.select(m.lead.c.email).where(m.lead.c.id == lead_id).with_for_update()
            )
        ).first()
        if email is None:
            continue
        status = await lead_rollup(conn, lead_id, bool(email[0]))
        await conn.execute(
            sa.update(m.lead)
            .where(m.lead.c.id == lead_id, m.lead.c.enrichment_status != status)
            .values(enrichment_status=status)
        )
