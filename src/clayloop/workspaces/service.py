"""Workspaces: creation, API-key authentication, callback secrets, settings."""

from __future__ import annotations

import secrets as pysecrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clayloop import models as m
from clayloop.config import split_secrets
from clayloop.kit.clock import utcnow
from clayloop.kit.errors import ClayloopError
from clayloop.kit.ids import hash_api_key, new_api_key, new_id
from clayloop.workspaces.schemas import WorkspaceSettings, load_settings


@dataclass(frozen=True)
class WorkspaceContext:
    """The workspace a caller authenticated as."""

    id: str
    name: str
    settings: WorkspaceSettings


async def create_workspace(conn: AsyncConnection, name: str) -> tuple[str, str]:
    """Create a workspace and its first API key; returns (workspace id, API key shown once)."""
    clean = name.strip()
    if not clean:
        raise ClayloopError(422, "invalid_name", "a workspace needs a non-empty name")
    workspace_id = new_id()
    key = new_api_key()
    now = utcnow()
    await conn.execute(
        sa.insert(m.workspace).values(
            id=workspace_id, name=clean[:200], settings={}, callback_secrets=[], created_at=now
        )
    )
    await conn.execute(
        sa.insert(m.api_key).values(
            id=new_id(),
            workspace_id=workspace_id,
            key_hash=hash_api_key(key),
            prefix=key[:8],
            created_at=now,
        )
    )
    return workspace_id, key


async def authenticate_api_key(conn: AsyncConnection, key: str) -> WorkspaceContext | None:
    """The workspace an API key belongs to, or None for an unknown or revoked key."""
    row = (
        await conn.execute(
            sa.select(m.workspace.c.id, m.workspace.c.name, m.workspace.c.settings)
            .join(m.api_key, m.api_key.c.workspace_id == m.workspace.c.id)
            .where(m.api_key.c.key_hash == hash_api_key(key), m.api_key.c.revoked_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    return WorkspaceContext(id=row.id, name=row.name, settings=load_settings(row.settings))


async def get_workspace(conn: AsyncConnection, workspace_id: str) -> WorkspaceContext:
    """A workspace by id, or a 404."""
    row = (
        await conn.execute(
            sa.select(m.workspace.c.id, m.workspace.c.name, m.workspace.c.settings).where(
                m.workspace.c.id == workspace_id
            )
        )
    ).first()
    if row is None:
        raise ClayloopError(404, "unknown_workspace", f"no workspace with id {workspace_id!r}")
    return WorkspaceContext(id=row.id, name=row.name, settings=load_settings(row.settings))


async def add_callback_secret(
    conn: AsyncConnection, workspace_id: str, secret: str | None = None
) -> tuple[str, bool]:
    """Add a callback secret to a workspace (generated when not given).

    Returns the secret and whether surrounding whitespace was trimmed from it.
    """
    await get_workspace(conn, workspace_id)
    trimmed = False
    if secret is None:
        value = pysecrets.token_urlsafe(32)
    else:
        found, trimmed_count = split_secrets([secret])
        if not found:
            raise ClayloopError(422, "invalid_secret", "a callback secret cannot be blank")
        value, trimmed = found[0], trimmed_count > 0
        if len(value) < 16:
            raise ClayloopError(
                422, "weak_secret", "a callback secret needs at least 16 characters"
            )
    current = (
        await conn.execute(
            sa.select(m.workspace.c.callback_secrets).where(m.workspace.c.id == workspace_id)
        )
    ).scalar_one()
    secrets_list = [s for s in (current or []) if s != value] + [value]
    await conn.execute(
        sa.update(m.workspace)
        .where(m.workspace.c.id == workspace_id)
        .values(callback_secrets=secrets_list)
    )
    return value, trimmed


async def remove_callback_secrets(conn: AsyncConnection, workspace_id: str) -> int:
    """Remove every callback secret of a workspace; returns how many there were."""
    current = (
        await conn.execute(
            sa.select(m.workspace.c.callback_secrets).where(m.workspace.c.id == workspace_id)
        )
    ).scalar_one_or_none()
    if current is None:
        raise ClayloopError(404, "unknown_workspace", f"no workspace with id {workspace_id!r}")
    await conn.execute(
        sa.update(m.workspace).where(m.workspace.c.id == workspace_id).values(callback_secrets=[])
    )
    return len(current)


async def update_settings(
    conn: AsyncConnection, workspace_id: str, changes: dict[str, Any]
) -> WorkspaceSettings:
    """Merge ``changes`` into a workspace's settings, validating the result."""
    ws = await get_workspace(conn, workspace_id)
    merged = ws.settings.model_dump() | changes
    try:
        new = WorkspaceSettings.model_validate(merged)
    except ValueError as exc:
        raise ClayloopError(422, "invalid_settings", str(exc).splitlines()[0]) from exc
    await conn.execute(
        sa.update(m.workspace)
        .where(m.workspace.c.id == workspace_id)
        .values(settings=new.model_dump(exclude_defaults=True))
    )
    # Caps may have been raised: leads held until midnight for the budget are due now
    # (the dispatcher holds them again at once if the budget is still spent).
    await conn.execute(
        sa.update(m.enrichment_request)
        .where(
            m.enrichment_request.c.workspace_id == workspace_id,
            m.enrichment_request.c.status == "queued",
            m.enrichment_request.c.reason == "budget_exhausted",
        )
        .values(next_attempt_at=utcnow())
    )
    return new


async def all_workspace_secrets(conn: AsyncConnection) -> list[tuple[str, str]]:
    """Every (workspace id, callback secret) pair, for authenticating callbacks."""
    rows = await conn.execute(sa.select(m.workspace.c.id, m.workspace.c.callback_secrets))
    return [(row.id, s) for row in rows for s in (row.callback_secrets or []) if s]
