"""Enrichment requests: opening them under the workspace policy, and the lead rollup."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clayloop import models as m
from clayloop.enrichment.policy import OPEN, lead_eligibility, rollup
from clayloop.kit.ids import new_id
from clayloop.workspaces.schemas import WorkspaceSettings


async def latest_requests(conn: AsyncConnection, lead_id: str) -> dict[str, Any]:
    """The latest request of each kind for a lead (rows), keyed by kind."""
    rows = await conn.execute(
        sa.select(m.enrichment_request)
        .where(m.enrichment_request.c.lead_id == lead_id)
        .order_by(m.enrichment_request.c.created_at, m.enrichment_request.c.id)
    )
    return pick_latest(rows)


def pick_latest(rows: Iterable[Any]) -> dict[str, Any]:
    """Of a lead's requests in creation order, the one that represents each kind.

    An open request always represents its kind; otherwise the newest one does.
    """
    latest: dict[str, Any] = {}
    for row in rows:
        current = latest.get(row.kind)
        if current is None or current.status not in OPEN or row.status in OPEN:
            latest[row.kind] = row
    return latest


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
    statuses: list[str] = []
    for kind in m.KINDS:
        current = latest.get(kind)
        verdict = lead_eligibility(
            lead, kind, settings, last_not_found_at=misses.get(kind), now=now
        )
        if current is not None and current.status in OPEN:
            if not verdict.eligible and current.status == "queued":
                await _close(conn, current.id, "skipped", verdict.reason, now)
                statuses.append("skipped")
            else:
                statuses.append(current.status)
            continue
        if verdict.eligible:
            await _insert(conn, lead, kind, "queued", None, now)
            statuses.append("queued")
            await _event(conn, lead, now, "request_opened", kind, source)
            continue
        # A finished cycle (enriched, not_found, failed) stays the kind's latest request: it
        # already explains why nothing is sent (has_value, cooldown), and a skip written
        # over it would hide the result. Only a kind never tried records its skip reason.
        if current is None or (current.status == "skipped" and current.reason != verdict.reason):
            await _insert(conn, lead, kind, "skipped", verdict.reason, now)
            statuses.append("skipped")
        else:
            statuses.append(current.status)
    status = rollup(bool(lead.get("email")), statuses)
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


async def _event(
    conn: AsyncConnection,
    lead: Mapping[str, Any],
    now: datetime,
    event: str,
    field: str | None,
    source: str,
) -> None:
    await conn.execute(
        sa.insert(m.lead_event).values(
            lead_id=lead["id"],
            workspace_id=lead["workspace_id"],
            created_at=now,
            event=event,
            field=field,
            source=source,
        )
    )


async def refresh_rollup(conn: AsyncConnection, lead_ids: Iterable[str]) -> None:
    """Recompute ``lead.enrichment_status`` for leads whose requests changed outside a callback."""
    for lead_id in sorted(set(lead_ids)):
        email = (
            await conn.execute(sa.select(m.lead.c.email).where(m.lead.c.id == lead_id))
        ).first()
        if email is None:
            continue
        latest = await latest_requests(conn, lead_id)
        status = rollup(bool(email[0]), [r.status for r in latest.values()])
        await conn.execute(
            sa.update(m.lead)
            .where(m.lead.c.id == lead_id, m.lead.c.enrichment_status != status)
            .values(enrichment_status=status)
        )
