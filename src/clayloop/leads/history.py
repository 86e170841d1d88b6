"""Lead history (``lead_event``): what changed on a lead, from where. Values arrive masked."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clayloop import models as m


async def add_lead_event(
    conn: AsyncConnection,
    *,
    lead_id: str,
    workspace_id: str,
    now: datetime,
    event: str,
    source: str,
    field: str | None = None,
    old: str | None = None,
    new: str | None = None,
) -> None:
    """Record one line of a lead's history in the caller's transaction."""
    await conn.execute(
        sa.insert(m.lead_event).values(
            lead_id=lead_id,
            workspace_id=workspace_id,
            created_at=now,
            event=event,
            field=field,
            old_value=old,
            new_value=new,
            source=source,
        )
    )
