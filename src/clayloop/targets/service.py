"""Clay targets: adding, listing, pausing and resuming table webhooks."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clayloop import models as m
from clayloop.enrichment.policy import NO_TARGET, TARGET_PAUSED
from clayloop.kit.clock import isoformat, utcnow
from clayloop.kit.errors import ClayloopError
from clayloop.kit.ids import is_uuid, new_id
from clayloop.targets.schemas import TargetIn, TargetOut

T = m.clay_target


def token_hint(token: str | None) -> str | None:
    """Enough of an auth token to tell two apart, never the whole of it."""
    if not token:
        return None
    return "…" + token[-4:] if len(token) >= 12 else "…"


def to_out(row: Any) -> TargetOut:
    """The operator view of a target row."""
    return TargetOut(
        id=row.id,
        workspace_id=row.workspace_id,
        kind=row.kind,
        name=row.name,
        url=row.url,
        auth_token_hint=token_hint(row.auth_token),
        rate=row.rate,
        burst=row.burst,
        group=row.rate_group,
        limit=row.submission_limit,
        submissions_used=row.submissions_used,
        daily_cap=row.daily_cap,
        cost_per_row=row.cost_per_row,
        required_fields=list(row.required_fields or []),
        priority=row.priority,
        state=row.state,
        paused_reason=row.paused_reason,
        last_success_at=isoformat(row.last_success_at),
        last_error_at=isoformat(row.last_error_at),
        last_error=row.last_error,
        created_at=isoformat(row.created_at) or "",
    )


async def add_target(conn: AsyncConnection, workspace_id: str, data: TargetIn) -> TargetOut:
    """Add a target to a workspace."""
    exists = (
        await conn.execute(sa.select(m.workspace.c.id).where(m.workspace.c.id == workspace_id))
    ).first()
    if exists is None:
        raise ClayloopError(404, "unknown_workspace", f"no workspace with id {workspace_id!r}")
    target_id = new_id()
    await conn.execute(
        sa.insert(T).values(
            id=target_id,
            workspace_id=workspace_id,
            kind=data.kind,
            name=data.name,
            url=data.url,
            auth_token=data.auth_token,
            rate=data.rate,
            burst=data.burst,
            rate_group=data.group,
            submission_limit=data.limit,
            submissions_used=0,
            daily_cap=data.daily_cap,
            cost_per_row=data.cost_per_row,
            required_fields=data.required_fields or [],
            priority=data.priority,
            state="active",
            created_at=utcnow(),
        )
    )
    # Leads held back for want of a usable target of this kind are due now, not after the hold.
    await conn.execute(
        sa.update(m.enrichment_request)
        .where(
            m.enrichment_request.c.status == "queued",
            m.enrichment_request.c.workspace_id == workspace_id,
            m.enrichment_request.c.kind == data.kind,
            m.enrichment_request.c.reason.in_((NO_TARGET, TARGET_PAUSED)),
        )
        .values(next_attempt_at=utcnow())
    )
    return await get_target(conn, workspace_id, target_id)


async def get_target(conn: AsyncConnection, workspace_id: str | None, target_id: str) -> TargetOut:
    """One target (of this workspace when given), or a 404."""
    if not is_uuid(target_id):
        raise ClayloopError(404, "unknown_target", f"no target with id {target_id!r}")
    query = sa.select(T).where(T.c.id == target_id)
    if workspace_id is not None:
        query = query.where(T.c.workspace_id == workspace_id)
    row = (await conn.execute(query)).first()
    if row is None:
        raise ClayloopError(404, "unknown_target", f"no target with id {target_id!r}")
    return to_out(row)


async def list_targets(conn: AsyncConnection, workspace_id: str | None) -> list[TargetOut]:
    """Targets of a workspace (or of all workspaces)."""
    query = sa.select(T).order_by(T.c.workspace_id, T.c.kind, T.c.priority, T.c.created_at)
    if workspace_id is not None:
        query = query.where(T.c.workspace_id == workspace_id)
    return [to_out(r) for r in await conn.execute(query)]


async def set_target_state(
    conn: AsyncConnection,
    workspace_id: str | None,
    target_id: str,
    *,
    paused: bool,
    reason: str | None = None,
) -> TargetOut:
    """Pause (with a reason) or resume a target."""
    await get_target(conn, workspace_id, target_id)
    await conn.execute(
        sa.update(T)
        .where(T.c.id == target_id)
        .values(
            state="paused" if paused else "active",
            paused_reason=(reason or "paused by an operator") if paused else None,
        )
    )
    if not paused:
        from clayloop.ops.alerts import resolve_alerts

        await resolve_alerts(conn, target_id=target_id, codes=("target_paused",))
        # Leads held back by the pause are due again now.
        await conn.execute(
            sa.update(m.enrichment_request)
            .where(
                m.enrichment_request.c.status == "queued",
                m.enrichment_request.c.workspace_id
                == sa.select(T.c.workspace_id).where(T.c.id == target_id).scalar_subquery(),
                m.enrichment_request.c.reason.in_(("target_paused", "no_target")),
            )
            .values(next_attempt_at=utcnow())
        )
    return await get_target(conn, workspace_id, target_id)
