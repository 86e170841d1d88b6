"""A lead's rollup stays right when a worker closes one request while a callback closes another.

The worker (a send Clay refused, a callback that never came) closes a request and
commits, then refreshes the lead's rollup in a transaction of its own, under the
lead's row lock. A callback that read the lead's requests before that commit writes
a rollup that misses the worker's change; the refresh, waiting for the callback's
lock, reads after it and stores the right one.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from clayloop import models as m
from clayloop.enrichment.policy import rollup
from clayloop.enrichment.requests import refresh_rollup
from clayloop.kit.clock import utcnow
from tests.support.database import backend
from tests.support.helpers import sent_lead

pytestmark = pytest.mark.skipif(
    backend() != "postgresql", reason="SQLite serializes writers: there is no interleaving"
)

R = m.enrichment_request


async def lead_status(engine, lead_id: str) -> str:
    async with engine.connect() as conn:
        status: str = (
            await conn.execute(sa.select(m.lead.c.enrichment_status).where(m.lead.c.id == lead_id))
        ).scalar_one()
    return status


async def test_a_refresh_waits_for_a_callback_holding_the_lead_and_stores_the_current_rollup(
    client, ws, engine
):
    lead = await sent_lead(client, ws, engine)
    phone = lead["enrichment"]["phone"]["request_id"]
    linkedin = lead["enrichment"]["linkedin"]["request_id"]

    async with engine.connect() as callback:
        # A callback for the phone request holds the lead and has read its requests:
        # both still sent.
        await callback.begin()
        await callback.execute(
            sa.select(m.lead.c.id).where(m.lead.c.id == lead["id"]).with_for_update()
        )
        seen = await callback.execute(sa.select(R.c.status).where(R.c.lead_id == lead["id"]))
        assert set(seen.scalars()) == {"sent"}

        # Meanwhile the worker gives the LinkedIn request up, commits, and refreshes.
        async with engine.begin() as worker:
            given_up = {"status": "failed", "completed_at": utcnow()}
            await worker.execute(sa.update(R).where(R.c.id == linkedin).values(**given_up))

        async def refresh() -> None:
            async with engine.begin() as conn:
                await refresh_rollup(conn, [lead["id"]])

        refreshing = asyncio.create_task(refresh())
        await asyncio.sleep(0.3)
        assert not refreshing.done()  # it waits for the callback's lock

        # The callback writes what its (now stale) view says: phone enriched, LinkedIn sent.
        stale = rollup(True, ["enriched", "sent"])
        await callback.execute(sa.update(R).where(R.c.id == phone).values(status="enriched"))
        await callback.execute(
            sa.update(m.lead).where(m.lead.c.id == lead["id"]).values(enrichment_status=stale)
        )
        await callback.commit()

        await asyncio.wait_for(refreshing, timeout=30)

    assert stale == "pending"
    current = rollup(True, ["enriched", "failed"])
    assert current == "enriched"
    assert await lead_status(engine, lead["id"]) == current
