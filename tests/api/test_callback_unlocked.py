"""PostgreSQL writes a callback that names its request in two statements, holding no lock.

The lead and its requests are read, the callback is decided, and one statement writes
everything only if nothing read has changed and no other transaction holds those rows.
Otherwise the callback is applied again under the lead's row lock, with the same
answer. These tests make the other transaction real: a second connection holding a
lock, or a change made between the read and the write. Concurrent callbacks share that
statement (group commit): each is still written only if its own rows are unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from clayloop import models as m
from clayloop.clay.auth import Credential
from clayloop.clay.payloads import extract_callback
from clayloop.enrichment import callbacks
from clayloop.kit.clock import utcnow
from clayloop.kit.rawsql import HotPath
from tests.conftest import SECRET
from tests.support.database import backend
from tests.support.helpers import (
    TOKEN_KEY,
    journal_mark,
    journal_since,
    lead_events,
    phone_body,
    request_row,
    sent_lead,
)

pytestmark = pytest.mark.skipif(
    backend() != "postgresql", reason="the unlocked write is PostgreSQL's (SQLite serializes)"
)

CALLBACK = "/api/webhooks/clay"
AUTH = {"x-clay-signature": SECRET}
PHONE = "+1 415 555 0132"


async def writes(client: httpx.AsyncClient) -> dict[str, float]:
    """clayloop_callback_writes_total by path, from /metrics."""
    text = (await client.get("/metrics")).text
    found = re.findall(r'clayloop_callback_writes_total\{path="(\w+)"\} (\S+)', text)
    return {"locked": 0.0, "unlocked": 0.0} | {path: float(n) for path, n in found}


async def delta(client: httpx.AsyncClient, before: dict[str, float]) -> dict[str, float]:
    after = await writes(client)
    return {path: after[path] - before[path] for path in after}


async def test_a_callback_naming_its_request_is_written_without_a_lock(client, ws, engine, server):
    lead = await sent_lead(client, ws, engine)
    before = await writes(client)

    answer = await client.post(CALLBACK, json=phone_body(lead), headers=AUTH)

    assert answer.json()["result"] == "applied", answer.text
    assert await delta(client, before) == {"locked": 0.0, "unlocked": 1.0}
    after = (await client.get(f"/api/v1/leads/{lead['id']}", headers=ws.headers)).json()
    assert after["phone"] == "+14155550132"
    assert after["enrichment"]["phone"]["status"] == "enriched"


async def test_a_callback_without_request_id_takes_the_lock(client, ws, engine, server):
    lead = await sent_lead(client, ws, engine)
    before = await writes(client)
    body = phone_body(lead)
    del body["request_id"], body["callback_token"]

    answer = await client.post(CALLBACK, json=body, headers=AUTH)

    assert answer.json()["result"] == "applied", answer.text
    assert await delta(client, before) == {"locked": 1.0, "unlocked": 0.0}


async def test_a_lead_locked_elsewhere_makes_the_callback_wait_then_apply_once(
    client, ws, engine, server
):
    lead = await sent_lead(client, ws, engine)
    before = await writes(client)
    async with engine.connect() as other:
        await other.execute(
            sa.select(m.lead.c.id).where(m.lead.c.id == lead["id"]).with_for_update()
        )
        posting = asyncio.create_task(client.post(CALLBACK, json=phone_body(lead), headers=AUTH))
        await asyncio.sleep(0.5)
        # While another transaction holds the lead, nothing may be written for it.
        assert not posting.done(), posting.result().text
        assert (await request_row(engine, lead["enrichment"]["phone"]["request_id"])).status == (
            "sent"
        )
        await other.commit()
    answer = await posting

    assert answer.json()["result"] == "applied", answer.text
    assert await delta(client, before) == {"locked": 1.0, "unlocked": 0.0}
    events = await lead_events(engine, lead["id"])
    assert len([e for e in events if e.event == "field_set" and e.field == "phone"]) == 1


async def test_a_sibling_request_held_by_a_send_does_not_block_the_callback(
    client, ws, engine, server
):
    # The dispatcher holds a request's row while it records what Clay answered.
    lead = await sent_lead(client, ws, engine)
    sibling = lead["enrichment"]["linkedin"]["request_id"]
    before = await writes(client)
    async with engine.connect() as other:
        await other.execute(
            sa.select(m.enrichment_request.c.id)
            .where(m.enrichment_request.c.id == sibling)
            .with_for_update()
        )
        answer = await asyncio.wait_for(
            client.post(CALLBACK, json=phone_body(lead), headers=AUTH), timeout=30
        )
        await other.rollback()

    assert answer.json()["result"] == "applied", answer.text
    assert await delta(client, before) == {"locked": 1.0, "unlocked": 0.0}
    after = (await client.get(f"/api/v1/leads/{lead['id']}", headers=ws.headers)).json()
    assert (after["phone"], after["enrichment_status"]) == ("+14155550132", "pending")


async def _plan_now(engine: AsyncEngine, body: dict[str, Any]) -> Any:
    """Read and decide a callback as apply_unlocked does, without writing it."""
    async with HotPath(engine).autocommit() as conn:
        rows = await conn.fetch(callbacks.LOCATE_BY_REQUEST, body["request_id"])
    fields = extract_callback(body)
    return callbacks._plan(rows, body["request_id"], Credential(None, "test"), fields, TOKEN_KEY)


async def _write_unless_changed(engine: AsyncEngine, plan: Any) -> bool:
    journal = callbacks.Journal("test", "0" * 64, None, time.perf_counter())
    write = callbacks.prepare_write(plan, utcnow(), journal)
    async with HotPath(engine).autocommit() as conn:
        [written] = await callbacks.write_batch(conn, [write], guarded=True)
    return written


@pytest.mark.parametrize(
    "change",
    [
        # Another callback closed the sibling request.
        lambda lead: (
            sa.update(m.enrichment_request)
            .where(m.enrichment_request.c.id == lead["enrichment"]["linkedin"]["request_id"])
            .values(status="not_found")
        ),
        # Another callback (or an API update) filled the phone.
        lambda lead: (
            sa.update(m.lead).where(m.lead.c.id == lead["id"]).values(phone="+14155550199")
        ),
        # A rollup was stored.
        lambda lead: (
            sa.update(m.lead).where(m.lead.c.id == lead["id"]).values(enrichment_status="enriched")
        ),
        # The request itself was closed.
        lambda lead: (
            sa.update(m.enrichment_request)
            .where(m.enrichment_request.c.id == lead["enrichment"]["phone"]["request_id"])
            .values(status="callback_timeout")
        ),
    ],
    ids=["sibling-closed", "phone-filled", "rollup-stored", "request-closed"],
)
async def test_a_change_between_read_and_write_writes_nothing(client, ws, engine, change):
    lead = await sent_lead(client, ws, engine)
    plan = await _plan_now(engine, phone_body(lead))
    async with engine.begin() as conn:
        await conn.execute(change(lead))
    events_before = await lead_events(engine, lead["id"])
    mark = await journal_mark(engine)

    assert await _write_unless_changed(engine, plan) is False

    assert await lead_events(engine, lead["id"]) == events_before
    assert await journal_since(engine, mark) == []
    phone_request = await request_row(engine, lead["enrichment"]["phone"]["request_id"])
    assert phone_request.completed_at is None


async def test_a_request_opened_between_read_and_write_writes_nothing(client, ws, engine):
    lead = await sent_lead(client, ws, engine)
    plan = await _plan_now(engine, phone_body(lead))
    async with engine.begin() as conn:
        now = utcnow()
        await conn.execute(
            sa.insert(m.enrichment_request).values(
                id=str(uuid.uuid4()),
                workspace_id=ws.id,
                lead_id=lead["id"],
                kind="linkedin",
                status="skipped",
                reason="test",
                attempts=0,
                send_count=0,
                timeout_resends=0,
                created_at=now,
                updated_at=now,
            )
        )

    assert await _write_unless_changed(engine, plan) is False


async def test_nothing_changed_writes_everything_once(client, ws, engine):
    lead = await sent_lead(client, ws, engine)
    plan = await _plan_now(engine, phone_body(lead))
    mark = await journal_mark(engine)

    assert await _write_unless_changed(engine, plan) is True
    # The same plan again: the request it read as open is closed now.
    assert await _write_unless_changed(engine, plan) is False

    assert [j.outcome for j in await journal_since(engine, mark)] == ["applied"]
    events = await lead_events(engine, lead["id"])
    assert len([e for e in events if e.event == "field_set" and e.field == "phone"]) == 1
    after = (await client.get(f"/api/v1/leads/{lead['id']}", headers=ws.headers)).json()
    assert after["phone"] == "+14155550132"


# Group commit: concurrent callbacks' writes go out as one statement.


async def _guarded_batch(engine: AsyncEngine, plans: list[Any]) -> list[bool]:
    journal = callbacks.Journal("test", "0" * 64, None, time.perf_counter())
    batch = [callbacks.prepare_write(plan, utcnow(), journal) for plan in plans]
    async with HotPath(engine).autocommit() as conn:
        return await callbacks.write_batch(conn, batch, guarded=True)


async def test_a_batch_writes_each_unchanged_callback_and_only_those(client, ws, engine):
    leads = [await sent_lead(client, ws, engine) for _ in range(3)]
    plans = [await _plan_now(engine, phone_body(lead)) for lead in leads]
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(m.lead).where(m.lead.c.id == leads[1]["id"]).values(phone="+14155550199")
        )
    mark = await journal_mark(engine)

    assert await _guarded_batch(engine, plans) == [True, False, True]

    assert sorted(j.lead_id for j in await journal_since(engine, mark)) == sorted(
        [leads[0]["id"], leads[2]["id"]]
    )
    filled, kept = ("+14155550132", "enriched"), ("+14155550199", "sent")
    for lead, (phone, status) in zip(leads, [filled, kept, filled], strict=True):
        after = (await client.get(f"/api/v1/leads/{lead['id']}", headers=ws.headers)).json()
        assert (after["phone"], after["enrichment"]["phone"]["status"]) == (phone, status)


async def test_two_callbacks_for_one_lead_in_one_batch_are_both_left_to_the_lock(
    client, ws, engine
):
    lead = await sent_lead(client, ws, engine)
    # A phone result and a LinkedIn result for the same lead, read at the same moment.
    linkedin = {
        "request_id": lead["enrichment"]["linkedin"]["request_id"],
        "enrichment_type": "linkedin",
        "linkedin_url": "https://www.linkedin.com/in/someone",
    }
    plans = [await _plan_now(engine, body) for body in (phone_body(lead), linkedin)]
    mark = await journal_mark(engine)

    assert await _guarded_batch(engine, plans) == [False, False]

    assert await journal_since(engine, mark) == []
    # One at a time, each would have been written (the second sees the first's change).
    assert await _guarded_batch(engine, plans[:1]) == [True]
    assert await _guarded_batch(engine, plans[1:]) == [False]


async def test_concurrent_callbacks_are_written_in_shared_batches_each_once(
    client, ws, engine, server
):
    leads = [await sent_lead(client, ws, engine) for _ in range(24)]
    before = await writes(client)
    sizes_before = await batch_sizes(client)
    mark = await journal_mark(engine)

    answers = await asyncio.gather(
        *(client.post(CALLBACK, json=phone_body(lead), headers=AUTH) for lead in leads)
    )

    assert [a.json()["result"] for a in answers] == ["applied"] * 24
    assert await delta(client, before) == {"locked": 0.0, "unlocked": 24.0}
    count, total = await batch_sizes(client)
    assert total - sizes_before[1] == 24  # every write went through a batch, once
    assert 1 <= count - sizes_before[0] <= 24
    assert len(await journal_since(engine, mark)) == 24
    for lead in leads:
        events = await lead_events(engine, lead["id"])
        assert [e.event for e in events if e.request_id == phone_body(lead)["request_id"]] == [
            "enrichment_enriched",
            "field_set",
        ]


async def batch_sizes(client: httpx.AsyncClient) -> tuple[float, float]:
    """(batches, callbacks) of clayloop_callback_write_batch_size, from /metrics."""
    text = (await client.get("/metrics")).text
    count = re.search(r"^clayloop_callback_write_batch_size_count (\S+)$", text, re.M)
    total = re.search(r"^clayloop_callback_write_batch_size_sum (\S+)$", text, re.M)
    return (float(count[1]) if count else 0.0, float(total[1]) if total else 0.0)


async def test_a_batch_that_fails_leaves_every_callback_of_it_to_the_lock(client, ws, engine):
    journal = callbacks.Journal("test", "0" * 64, None, time.perf_counter())
    good, bad = [
        callbacks.prepare_write(
            await _plan_now(engine, phone_body(await sent_lead(client, ws, engine))),
            utcnow(),
            journal,
        )
        for _ in range(2)
    ]
    # A value the database refuses (a request status holds at most 16 characters).
    bad = dataclasses.replace(bad, row=bad.row._replace(outcome="x" * 40))
    path = callbacks.UnlockedPath(HotPath(engine), lanes=1)
    mark = await journal_mark(engine)

    # Submitted in the same turn of the loop, the two share a batch: neither is written,
    # so each is retried under its lead's lock, where only the bad one fails.
    both = await asyncio.gather(path.writes.submit(1, good), path.writes.submit(2, bad))

    assert both == [False, False]
    assert await journal_since(engine, mark) == []
    assert await path.writes.submit(1, good) is True
    with pytest.raises(asyncpg.PostgresError):
        await path.writes.submit(2, bad)
    assert len(await journal_since(engine, mark)) == 1
