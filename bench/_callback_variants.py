"""How much CPU the database work of one callback costs, written four ways (``bench/callback.py``).

``python bench/_callback_variants.py SPEC.json`` with a spec ``{"url", "token_key",
"slices": {variant: [[request_id, lead_id, phone], ...]}}`` applies each variant's callbacks
one after the other (no HTTP, no concurrency, one connection) and prints one JSON line:
``{variant: {"cpu_ms", "wall_ms", "callbacks"}}`` per callback, after a warm-up.

* ``clayloop``: what the endpoint does on PostgreSQL: ``apply_unlocked`` (read, then one
  guarded write that journals too, here always a batch of one) on the callback pool,
  ``apply_callback`` if that declines;
* ``core_prebuilt``: the same statements (lock, locate, update request, update lead, insert two
  lead events, insert journal) as SQLAlchemy Core statements built once with ``bindparam()``;
* ``driver_sql``: the same statements as fixed SQL on the asyncpg connection under the
  SQLAlchemy transaction (``AsyncConnection.get_raw_connection()``);
* ``bare_asyncpg``: the same statements on a bare asyncpg connection;
* ``raw_baseline``: the raw-asyncpg baseline's two statements (UPDATE + INSERT).

The variants other than ``clayloop`` hard-wire the decisions this bench's data leads to
(phone found, field filled, lead enriched): they measure what the statements cost.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import sqlalchemy as sa

from clayloop import models as m
from clayloop.clay.auth import Credential
from clayloop.clay.payloads import extract_callback
from clayloop.config import Settings
from clayloop.enrichment.callbacks import Journal, UnlockedPath, apply_callback, apply_unlocked
from clayloop.kit.db import create_engine
from clayloop.kit.rawsql import HotPath
from clayloop.kit.redact import redact_mapping

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

R = m.enrichment_request
L = m.lead
WARMUP = 100
CRED = Credential(None, "secret:x-clay-signature")
PHONE = "+14155550100"
MASKED = "+1******0100"

Item = tuple[str, str, str]


def body_of(item: Item, token: str) -> dict[str, Any]:
    return {
        "request_id": item[0],
        "lead_id": item[1],
        "enrichment_type": "phone",
        "callback_token": token,
        "success": True,
        "phone": item[2],
    }


def journal(item: Item, body: bytes, now: datetime) -> dict[str, Any]:
    return {
        "received_at": now,
        "workspace_id": None,
        "request_id": item[0],
        "lead_id": item[1],
        "kind": "phone",
        "auth_method": CRED.method,
        "outcome": "applied",
        "http_status": 200,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_redacted": json.dumps(redact_mapping(json.loads(body))),
        "error": None,
        "duration_ms": 1.0,
    }


def events(lead_id: str, workspace_id: str, request_id: str, now: datetime) -> list[dict[str, Any]]:
    base = {
        "lead_id": lead_id,
        "workspace_id": workspace_id,
        "created_at": now,
        "source": "clay_callback",
        "request_id": request_id,
        "detail": None,
    }
    return [
        base
        | {"event": "enrichment_enriched", "field": "phone", "old_value": None, "new_value": None},
        base | {"event": "field_set", "field": "phone", "old_value": None, "new_value": MASKED},
    ]


# --------------------------------------------------------------------------- Core, built once

OWNER = sa.select(R.c.lead_id).where(R.c.id == sa.bindparam("rid")).scalar_subquery()
LOCK = sa.select(L.c.id).where(L.c.id == OWNER).with_for_update()
LOCATE = (
    sa.select(
        L.c.id.label("lead_id"),
        L.c.workspace_id,
        L.c.email,
        L.c.linkedin_url,
        L.c.linkedin_key,
        L.c.phone,
        L.c.enrichment_status,
        m.workspace.c.settings,
        R.c.id.label("request_id"),
        R.c.kind,
        R.c.status,
        R.c.reason,
        R.c.result_value,
        R.c.created_at,
    )
    .select_from(
        L.join(m.workspace, m.workspace.c.id == L.c.workspace_id).outerjoin(
            R, R.c.lead_id == L.c.id
        )
    )
    .where(L.c.id == sa.bindparam("lid"))
    .order_by(R.c.created_at, R.c.id)
)
UPDATE_REQUEST = (
    sa.update(R)
    .where(R.c.id == sa.bindparam("rid"))
    .values(
        status=sa.bindparam("p_status"),
        reason=sa.bindparam("p_reason"),
        result_value=sa.bindparam("p_value"),
        completed_at=sa.bindparam("p_now"),
        updated_at=sa.bindparam("p_now"),
        lease_until=None,
        lease_owner=None,
    )
)
UPDATE_LEAD = (
    sa.update(L)
    .where(L.c.id == sa.bindparam("lid"))
    .values(
        phone=sa.bindparam("p_phone"),
        enrichment_status=sa.bindparam("p_status"),
        updated_at=sa.bindparam("p_now"),
    )
)
INSERT_EVENTS = sa.insert(m.lead_event)
INSERT_JOURNAL = sa.insert(m.callback_event)

# --------------------------------------------------------------------------- fixed SQL

SQL_LOCK = (
    "SELECT id FROM lead WHERE id = "
    "(SELECT lead_id FROM enrichment_request WHERE id = $1) FOR UPDATE"
)
SQL_LOCATE = (
    "SELECT l.id AS lead_id, l.workspace_id, l.email, l.linkedin_url, l.linkedin_key, l.phone, "
    "l.enrichment_status, w.settings, r.id AS request_id, r.kind, r.status, r.reason, "
    "r.result_value, r.created_at FROM lead l JOIN workspace w ON w.id = l.workspace_id "
    "LEFT OUTER JOIN enrichment_request r ON r.lead_id = l.id "
    "WHERE l.id = $1 ORDER BY r.created_at, r.id"
)
SQL_UPDATE_REQUEST = (
    "UPDATE enrichment_request SET status = $2, reason = $3, result_value = $4, "
    "completed_at = $5, updated_at = $5, lease_until = NULL, lease_owner = NULL WHERE id = $1"
)
SQL_UPDATE_LEAD = (
    "UPDATE lead SET phone = $2, enrichment_status = $3, updated_at = $4 WHERE id = $1"
)
SQL_EVENTS = (
    "INSERT INTO lead_event (lead_id, workspace_id, created_at, event, field, old_value, "
    "new_value, source, request_id, detail) VALUES "
    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10), ($1, $2, $3, $11, $12, $13, $14, $8, $9, $10)"
)
SQL_JOURNAL = (
    "INSERT INTO callback_event (received_at, workspace_id, request_id, lead_id, kind, "
    "auth_method, outcome, http_status, body_sha256, body_redacted, error, duration_ms) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
)
SQL_RAW_UPDATE = (
    "UPDATE enrichment_request SET status = 'enriched', result_value = $2, completed_at = $3, "
    "updated_at = $3, lease_until = NULL, lease_owner = NULL WHERE id = $1"
)


async def driver_statements(raw: Any, item: Item, body: bytes, now: datetime) -> None:
    """The callback's statements on an asyncpg connection, inside its open transaction."""
    lead_id = await raw.fetchval(SQL_LOCK, item[0])
    rows = await raw.fetch(SQL_LOCATE, lead_id)
    await raw.execute(SQL_UPDATE_REQUEST, item[0], "enriched", None, PHONE, now)
    await raw.execute(SQL_UPDATE_LEAD, lead_id, PHONE, "enriched", now)
    ev = events(lead_id, rows[0]["workspace_id"], item[0], now)
    first, second = ev
    await raw.execute(
        SQL_EVENTS,
        *(first[k] for k in ("lead_id", "workspace_id", "created_at", "event", "field")),
        first["old_value"],
        first["new_value"],
        "clay_callback",
        item[0],
        None,
        second["event"],
        second["field"],
        second["old_value"],
        second["new_value"],
    )
    await raw.execute(SQL_JOURNAL, *journal(item, body, now).values())


async def run_variant(name: str, spec: dict[str, Any], items: list[Item]) -> dict[str, float]:
    from clayloop.kit.ids import callback_token

    settings = Settings(_env_file=None, database_url=spec["url"])  # type: ignore[call-arg]
    engine = create_engine(settings)
    bare: asyncpg.Connection | None = None
    if name in ("bare_asyncpg", "raw_baseline"):
        bare = await asyncpg.connect(spec["url"])

    hot = await HotPath.open(engine, 1) if name == "clayloop" else None
    # Sequential: every write is a batch of one.
    unlocked = UnlockedPath(hot, lanes=1) if hot is not None else None

    async def clayloop(item: Item) -> None:
        assert hot is not None and unlocked is not None
        body = json.dumps(body_of(item, callback_token(spec["token_key"], item[0]))).encode()
        obj = json.loads(body)
        fields = extract_callback(obj)
        now = datetime.now(UTC)
        record = Journal(
            auth_method=CRED.method,
            body_sha256=hashlib.sha256(body).hexdigest(),
            body_redacted=json.dumps(redact_mapping(obj)),
            started=time.perf_counter(),
        )
        args = {"cred": CRED, "fields": fields, "token_key": spec["token_key"], "now": now}
        applied = await apply_unlocked(unlocked, journal=record, **args)
        if applied is None:
            async with hot.transaction() as tx:
                applied = await apply_callback(tx, journal=record, **args)
        if applied.result != "applied":
            raise RuntimeError(f"not applied: {applied.result}")

    async def core_prebuilt(item: Item) -> None:
        body = json.dumps(body_of(item, "")).encode()
        now = datetime.now(UTC)
        async with engine.begin() as conn:
            lead_id = (await conn.execute(LOCK, {"rid": item[0]})).scalar()
            rows = (await conn.execute(LOCATE, {"lid": lead_id})).all()
            params = {"rid": item[0], "p_status": "enriched", "p_reason": None}
            await conn.execute(UPDATE_REQUEST, params | {"p_value": PHONE, "p_now": now})
            await conn.execute(
                UPDATE_LEAD,
                {"lid": lead_id, "p_phone": PHONE, "p_status": "enriched", "p_now": now},
            )
            await conn.execute(INSERT_EVENTS, events(lead_id, rows[0].workspace_id, item[0], now))
            await conn.execute(INSERT_JOURNAL, journal(item, body, now))

    async def driver_sql(item: Item) -> None:
        body = json.dumps(body_of(item, "")).encode()
        now = datetime.now(UTC)
        async with engine.begin() as conn:
            fairy = await conn.get_raw_connection()
            adapted = fairy.dbapi_connection
            await adapted._start_transaction()  # what SQLAlchemy's first execute would do
            await driver_statements(adapted.driver_connection, item, body, now)

    async def bare_asyncpg(item: Item) -> None:
        assert bare is not None
        body = json.dumps(body_of(item, "")).encode()
        now = datetime.now(UTC)
        async with bare.transaction():
            await driver_statements(bare, item, body, now)

    async def raw_baseline(item: Item) -> None:
        assert bare is not None
        body = json.dumps(body_of(item, "")).encode()
        now = datetime.now(UTC)
        async with bare.transaction():
            await bare.execute(SQL_RAW_UPDATE, item[0], PHONE, now)
            await bare.execute(SQL_JOURNAL, *journal(item, body, now).values())

    variants: dict[str, Callable[[Item], Awaitable[None]]] = {
        "clayloop": clayloop,
        "core_prebuilt": core_prebuilt,
        "driver_sql": driver_sql,
        "bare_asyncpg": bare_asyncpg,
        "raw_baseline": raw_baseline,
    }
    fn = variants[name]
    try:
        for item in items[:WARMUP]:
            await fn(item)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for item in items[WARMUP:]:
            await fn(item)
        wall1, cpu1 = time.perf_counter(), time.process_time()
    finally:
        if bare is not None:
            await bare.close()
        if hot is not None:
            await hot.close()
        await engine.dispose()
    count = len(items) - WARMUP
    return {
        "cpu_ms": round(1000 * (cpu1 - cpu0) / count, 3),
        "wall_ms": round(1000 * (wall1 - wall0) / count, 3),
        "callbacks": count,
    }


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, items in spec["slices"].items():
        try:
            results[name] = await run_variant(name, spec, [tuple(i) for i in items])  # type: ignore[misc]
        except Exception as exc:  # a changed src API must not sink the whole bench
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return results


def main() -> None:
    """Entry point: ``python bench/_callback_variants.py SPEC.json``."""
    with open(sys.argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    result = uvloop.run(run(spec)) if uvloop is not None else asyncio.run(run(spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
