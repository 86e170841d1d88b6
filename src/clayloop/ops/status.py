"""Loop status: where every request stands and why (the answer to "why wasn't it sent?")."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clayloop import models as m
from clayloop.ops.alerts import open_alerts

R = m.enrichment_request


async def loop_status(conn: AsyncConnection, workspace_id: str | None = None) -> dict[str, Any]:
    """Request counts by kind, status and reason; lead rollup counts; open alerts; usage."""
    where = [] if workspace_id is None else [R.c.workspace_id == workspace_id]
    requests = [
        {"kind": kind, "status": status, "reason": reason, "count": count}
        for kind, status, reason, count in await conn.execute(
            sa.select(R.c.kind, R.c.status, R.c.reason, sa.func.count())
            .where(*where)
            .group_by(R.c.kind, R.c.status, R.c.reason)
            .order_by(R.c.kind, R.c.status, R.c.reason)
        )
    ]
    lead_where = [] if workspace_id is None else [m.lead.c.workspace_id == workspace_id]
    leads = {
        status: count
        for status, count in await conn.execute(
            sa.select(m.lead.c.enrichment_status, sa.func.count())
            .where(*lead_where)
            .group_by(m.lead.c.enrichment_status)
        )
    }
    sends = (
        await conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(R.c.send_count), 0),
                sa.func.count().filter(R.c.send_count > 1),
            ).where(*where)
        )
    ).one()
    return {
        "requests": requests,
        "leads": leads,
        "rows_sent": int(sends[0]),
        "requests_sent_more_than_once": int(sends[1]),
        "alerts": await open_alerts(conn, workspace_id),
    }
