"""Small helpers the tests share: creating leads, calling back, reading the database."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import phonenumbers
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from clayloop import models as m
from clayloop.kit.clock import utcnow
from clayloop.kit.ids import callback_token

TOKEN_KEY = "test-token-key"


async def create_lead(client: httpx.AsyncClient, ws: Any, **fields: Any) -> dict[str, Any]:
    """POST a lead and return the lead resource (asserting success)."""
    answer = await client.post("/api/v1/leads", json=fields, headers=ws.headers)
    assert answer.status_code in (200, 201), answer.text
    data: dict[str, Any] = answer.json()
    return data


async def mark_sent(engine: AsyncEngine, request_id: str) -> None:
    """Move a queued request to sent, as the dispatcher would after Clay accepted the row."""
    async with engine.begin() as conn:
        now = utcnow()
        await conn.execute(
            sa.update(m.enrichment_request)
            .where(m.enrichment_request.c.id == request_id)
            .values(status="sent", sent_at=now, attempts=1, send_count=1)
        )


async def sent_lead(client: httpx.AsyncClient, ws: Any, engine: AsyncEngine) -> dict[str, Any]:
    """A new lead (fresh email) whose linkedin and phone requests are both sent."""
    lead = await create_lead(client, ws, email=unique_email())
    for kind in ("linkedin", "phone"):
        await mark_sent(engine, lead["enrichment"][kind]["request_id"])
    return lead


def phone_body(lead: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The recommended callback body for the lead's phone request (``fields`` override)."""
    request_id = lead["enrichment"]["phone"]["request_id"]
    return {
        "request_id": request_id,
        "lead_id": lead["id"],
        "enrichment_type": "phone",
        "callback_token": token_for(request_id),
        "success": True,
        "phone": "+1 415 555 0132",
    } | fields


def token_for(request_id: str) -> str:
    """The callback token the test server issues for a request."""
    return callback_token(TOKEN_KEY, request_id)


async def rows(engine: AsyncEngine, query: Any) -> list[Any]:
    """Run a query on the test engine and return all rows."""
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def request_row(engine: AsyncEngine, request_id: str) -> Any:
    """One enrichment_request row."""
    found = await rows(
        engine, sa.select(m.enrichment_request).where(m.enrichment_request.c.id == request_id)
    )
    return found[0]


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 20.0, interval: float = 0.05
) -> None:
    """Wait until ``check`` is true, or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


# --- Reading what a request left behind -----------------------------------------------------


def unique_email(tag: str = "lead") -> str:
    """An email address no other test uses (callbacks may look leads up by email)."""
    return f"{tag}.{uuid.uuid4().hex[:12]}@example.com"


def unique_phone() -> str:
    """A valid US number in E.164 that no other test is likely to use."""
    while True:
        candidate = f"+1415{random.randint(2000000, 9999999)}"
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            return candidate


async def lead_events(engine: AsyncEngine, lead_id: str) -> list[Any]:
    """A lead's history rows, oldest first."""
    e = m.lead_event
    return await rows(engine, sa.select(e).where(e.c.lead_id == lead_id).order_by(e.c.id))


async def requests_of(engine: AsyncEngine, lead_id: str) -> list[Any]:
    """A lead's enrichment_request rows in creation order."""
    r = m.enrichment_request
    return await rows(
        engine, sa.select(r).where(r.c.lead_id == lead_id).order_by(r.c.created_at, r.c.id)
    )


async def journal_mark(engine: AsyncEngine) -> int:
    """The id of the newest callback_event row (0 when none); rows after it are new."""
    found = await rows(engine, sa.select(sa.func.max(m.callback_event.c.id)))
    return int(found[0][0] or 0)


async def journal_since(engine: AsyncEngine, mark: int) -> list[Any]:
    """callback_event rows written after :func:`journal_mark` returned ``mark``."""
    e = m.callback_event
    return await rows(engine, sa.select(e).where(e.c.id > mark).order_by(e.c.id))
