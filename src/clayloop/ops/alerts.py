"""Alerts: alert-worthy conditions kept open in the database until they clear.

An alert is raised once and then only counted (``count``, ``last_seen_at``) while the
condition lasts, so a stuck loop produces one loud line and a number, not a flood.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clayloop import models as m
from clayloop.kit.clock import isoformat, utcnow
from clayloop.kit.log import get_logger

A = m.alert
log = get_logger("alerts")


async def raise_alert(
    conn: AsyncConnection,
    code: str,
    message: str,
    *,
    workspace_id: str | None = None,
    target_id: str | None = None,
) -> bool:
    """Open an alert, or count another sighting of an open one; True when newly opened."""
    now = utcnow()
    where: list[sa.ColumnElement[bool]] = [A.c.code == code, A.c.resolved_at.is_(None)]
    where.append(A.c.target_id == target_id if target_id else A.c.target_id.is_(None))
    if workspace_id and not target_id:
        where.append(A.c.workspace_id == workspace_id)
    updated = await conn.execute(
        sa.update(A).where(*where).values(count=A.c.count + 1, last_seen_at=now, message=message)
    )
    if updated.rowcount:
        return False
    await conn.execute(
        sa.insert(A).values(
            workspace_id=workspace_id,
            target_id=target_id,
            code=code,
            message=message,
            count=1,
            created_at=now,
            last_seen_at=now,
        )
    )
    log.error("alert", code=code, workspace_id=workspace_id, target_id=target_id, detail=message)
    return True


async def resolve_alerts(
    conn: AsyncConnection,
    *,
    codes: Iterable[str],
    target_id: str | None = None,
    workspace_id: str | None = None,
) -> int:
    """Close open alerts of these codes (for a target or workspace); returns how many."""
    where: list[sa.ColumnElement[bool]] = [A.c.code.in_(list(codes)), A.c.resolved_at.is_(None)]
    if target_id:
        where.append(A.c.target_id == target_id)
    if workspace_id:
        where.append(A.c.workspace_id == workspace_id)
    result = await conn.execute(sa.update(A).where(*where).values(resolved_at=utcnow()))
    return int(result.rowcount or 0)


async def open_alerts(
    conn: AsyncConnection, workspace_id: str | None = None
) -> list[dict[str, Any]]:
    """Open alerts, newest first (of one workspace, or all)."""
    query = sa.select(A).where(A.c.resolved_at.is_(None)).order_by(A.c.created_at.desc())
    if workspace_id:
        query = query.where(A.c.workspace_id == workspace_id)
    return [
        {
            "id": r.id,
            "code": r.code,
            "message": r.message,
            "workspace_id": r.workspace_id,
            "target_id": r.target_id,
            "count": r.count,
            "created_at": isoformat(r.created_at),
            "last_seen_at": isoformat(r.last_seen_at),
        }
        for r in await conn.execute(query)
    ]
