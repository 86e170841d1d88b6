"""Applying a Clay callback to the lead it belongs to, exactly once, in one transaction."""

from __future__ import annotations

import contextlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from clayloop.clay.auth import Credential
from clayloop.clay.payloads import CallbackFields, Decision, decide
from clayloop.enrichment.policy import KIND_FIELD, OPEN, rollup
from clayloop.enrichment.requests import pick_for_rollup, pick_latest
from clayloop.kit import metrics
from clayloop.kit.batching import Coalescer
from clayloop.kit.errors import ClayloopError
from clayloop.kit.ids import callback_token, is_uuid
from clayloop.kit.log import get_logger
from clayloop.kit.rawsql import HotPath, Query, RawTx
from clayloop.kit.redact import mask_value
from clayloop.leads.normalize import (
    InvalidValue,
    linkedin_match_key,
    normalize_email,
    normalize_linkedin_url,
)
from clayloop.workspaces.schemas import WorkspaceSettings, load_settings

log = get_logger("callback")

# Named queries of the callback hot path (plain SQL: see clayloop.kit.rawsql).

# Lock the lead a request belongs to (PostgreSQL); returns the lead id.
LOCK_LEAD_OF_REQUEST = Query(
    """SELECT l.id FROM lead l JOIN enrichment_request r ON r.lead_id = l.id
       WHERE r.id = $1 FOR UPDATE OF l"""
)
# Lock a lead by id (PostgreSQL).
LOCK_LEAD = Query("SELECT id FROM lead WHERE id = $1 FOR UPDATE")
# The lead a request belongs to (SQLite: writers are serialized by BEGIN IMMEDIATE).
LEAD_OF_REQUEST = Query("SELECT lead_id AS id FROM enrichment_request WHERE id = $1")
# A lead's identity, its workspace settings and every request of it, oldest first.
LOCATE = Query(
    """SELECT l.id AS lead_id, l.workspace_id, l.email, l.linkedin_url, l.linkedin_key,
              l.phone, l.enrichment_status, w.settings,
              r.id AS request_id, r.kind, r.status, r.reason, r.result_value
       FROM lead l
       JOIN workspace w ON w.id = l.workspace_id
       LEFT JOIN enrichment_request r ON r.lead_id = l.id
       WHERE l.id = $1
       ORDER BY r.created_at, r.id"""
)
# Leads with this email, primary or alternate (any workspace / one workspace).
LEADS_BY_EMAIL = Query(
    """SELECT id FROM lead WHERE email = $1
       UNION SELECT lead_id FROM lead_alternate_email WHERE email = $1 LIMIT 50"""
)
LEADS_BY_EMAIL_IN = Query(
    """SELECT id FROM lead WHERE email = $1 AND workspace_id = $2
       UNION SELECT lead_id FROM lead_alternate_email WHERE email = $1 AND workspace_id = $2
       LIMIT 50"""
)
# Leads with this LinkedIn profile (any workspace / one workspace).
LEADS_BY_LINKEDIN = Query("SELECT id FROM lead WHERE linkedin_key = $1 LIMIT 50")
LEADS_BY_LINKEDIN_IN = Query(
    "SELECT id FROM lead WHERE linkedin_key = $1 AND workspace_id = $2 LIMIT 50"
)
# Close a request with the callback's outcome.
CLOSE_REQUEST = Query(
    """UPDATE enrichment_request
       SET status = $2, reason = $3, result_value = $4, completed_at = $5, updated_at = $5,
           lease_until = NULL, lease_owner = NULL
       WHERE id = $1"""
)
# Fill the lead's phone and store its rollup.
FILL_PHONE = Query(
    "UPDATE lead SET phone = $2, enrichment_status = $3, updated_at = $4 WHERE id = $1"
)
# Fill the lead's LinkedIn URL (and its match key) and store its rollup.
FILL_LINKEDIN = Query(
    """UPDATE lead SET linkedin_url = $2, linkedin_key = $3, enrichment_status = $4,
       updated_at = $5 WHERE id = $1"""
)
# Store the lead's rollup.
SET_STATUS = Query("UPDATE lead SET enrichment_status = $2, updated_at = $3 WHERE id = $1")
# One line of the callback journal.
INSERT_JOURNAL = Query(
    """INSERT INTO callback_event (received_at, workspace_id, request_id, lead_id, kind,
                                   auth_method, outcome, http_status, body_sha256,
                                   body_redacted, error, duration_ms)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"""
)
# One line of lead history.
INSERT_LEAD_EVENT = Query(
    """INSERT INTO lead_event (lead_id, workspace_id, created_at, event, field, old_value,
                               new_value, source, request_id, detail)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"""
)


# The lead a request belongs to, its workspace settings and every request of it, oldest
# first, read without a lock (PostgreSQL, see apply_unlocked).
LOCATE_BY_REQUEST = Query(
    """SELECT l.id AS lead_id, l.workspace_id, l.email, l.linkedin_url, l.linkedin_key,
              l.phone, l.enrichment_status, w.settings,
              r.id AS request_id, r.kind, r.status, r.reason, r.result_value
       FROM enrichment_request q
       JOIN lead l ON l.id = q.lead_id
       JOIN workspace w ON w.id = l.workspace_id
       JOIN enrichment_request r ON r.lead_id = l.id
       WHERE q.id = $1
       ORDER BY r.created_at, r.id"""
)

# PostgreSQL: every write of a batch of applied callbacks in one statement (one round
# trip, one commit): close each request, fill its lead and store the rollup, add the
# lead's history, journal it. Parameters are columns with one element per callback
# ($1 … $16); history rows ($17 … $22) name their callback by its position (1-based).
_INPUT = """WITH input AS MATERIALIZED (
      SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                           $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[],
                           $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
                           $15::text[], $16::float8[])
        WITH ORDINALITY AS i(request_id, outcome, reason, value, at, fill_field, fill,
                             linkedin_key, rollup, lead_id, workspace_id, kind, auth_method,
                             body_sha256, body_redacted, duration_ms, n)
    ), """
_WRITES = """
    closed AS (
      UPDATE enrichment_request r
      SET status = ok.outcome, reason = ok.reason, result_value = ok.value,
          completed_at = ok.at, updated_at = ok.at, lease_until = NULL, lease_owner = NULL
      FROM ok WHERE r.id = ok.request_id
    ), filled AS (
      UPDATE lead l
      SET phone = CASE WHEN ok.fill_field = 'phone' THEN ok.fill ELSE l.phone END,
          linkedin_url = CASE WHEN ok.fill_field = 'linkedin_url' THEN ok.fill
                              ELSE l.linkedin_url END,
          linkedin_key = CASE WHEN ok.fill_field = 'linkedin_url' THEN ok.linkedin_key
                              ELSE l.linkedin_key END,
          enrichment_status = ok.rollup, updated_at = ok.at
      FROM ok
      WHERE l.id = ok.lead_id AND (ok.fill_field IS NOT NULL OR l.enrichment_status <> ok.rollup)
    ), history AS (
      INSERT INTO lead_event (lead_id, workspace_id, created_at, event, field, old_value,
                              new_value, source, request_id, detail)
      SELECT ok.lead_id, ok.workspace_id, ok.at, e.event, e.field, e.old_value, e.new_value,
             'clay_callback', ok.request_id, e.detail
      FROM unnest($17::int[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[])
           WITH ORDINALITY AS e(n, event, field, old_value, new_value, detail, position)
      JOIN ok ON ok.n = e.n
      ORDER BY e.position
    ), journal AS (
      INSERT INTO callback_event (received_at, workspace_id, request_id, lead_id, kind,
                                  auth_method, outcome, http_status, body_sha256,
                                  body_redacted, error, duration_ms)
      SELECT ok.at, ok.workspace_id, ok.request_id, ok.lead_id, ok.kind, ok.auth_method,
             'applied', 200, ok.body_sha256, ok.body_redacted, ok.reason, ok.duration_ms
      FROM ok ORDER BY ok.n
    )
    SELECT n FROM ok"""

# Under each lead's row lock (apply_callback): every callback of the batch is written.
_ALL = """
    ok AS (SELECT * FROM input),"""
# Constant text throughout: no input reaches the SQL.
APPLY_PG = Query(_INPUT + _ALL + _WRITES)

# Without a transaction of our own (apply_unlocked): a callback is written only if its
# lead and every request of it are still as read ($23 … $26 per callback, $27 … $29 one
# row per request read), nobody holds a lock on them, and no other callback of the batch
# is about the same lead. A request read must still be there with the status read
# (``still`` = ``was``) and no other may have appeared (``now_held`` = ``was``). SKIP
# LOCKED never waits, so this statement cannot deadlock; a row updated since the read
# is re-checked in its newest version (READ COMMITTED), so any change leaves that
# callback unwritten, and absent from the result.
_UNCHANGED = """
    guard AS (
      SELECT * FROM unnest($23::text[], $24::text[], $25::text[], $26::text[])
        WITH ORDINALITY AS g(email, phone, linkedin_url, rollup, n)
    ), seen AS (
      SELECT * FROM unnest($27::int[], $28::text[], $29::text[]) AS s(n, id, status)
    ), alone AS (
      SELECT lead_id FROM input GROUP BY lead_id HAVING count(*) = 1
    ), held AS MATERIALIZED (
      SELECT i.n, l.id FROM input i
      JOIN alone a ON a.lead_id = i.lead_id
      JOIN guard g ON g.n = i.n
      JOIN lead l ON l.id = i.lead_id
      WHERE l.email IS NOT DISTINCT FROM g.email AND l.phone IS NOT DISTINCT FROM g.phone
        AND l.linkedin_url IS NOT DISTINCT FROM g.linkedin_url
        AND l.enrichment_status = g.rollup
      FOR UPDATE OF l SKIP LOCKED
    ), siblings AS MATERIALIZED (
      SELECT r.lead_id, r.id, r.status FROM enrichment_request r
      WHERE r.lead_id IN (SELECT id FROM held)
      FOR UPDATE OF r SKIP LOCKED
    ), was AS (
      SELECT n, count(*) AS requests FROM seen GROUP BY n
    ), still AS (
      SELECT s.n, count(*) AS requests FROM seen s
      JOIN siblings r ON r.id = s.id AND r.status = s.status
      GROUP BY s.n
    ), now_held AS (
      SELECT lead_id, count(*) AS requests FROM siblings GROUP BY lead_id
    ), ok AS MATERIALIZED (
      SELECT i.* FROM input i
      JOIN held h ON h.n = i.n
      JOIN was ON was.n = i.n
      JOIN still ON still.n = i.n AND still.requests = was.requests
      JOIN now_held ON now_held.lead_id = i.lead_id AND now_held.requests = was.requests
    ),"""
APPLY_PG_IF_UNCHANGED = Query(_INPUT + _UNCHANGED + _WRITES)


@dataclass(frozen=True)
class Journal:
    """What the journal row of an accepted callback needs besides the outcome."""

    auth_method: str
    body_sha256: str
    body_redacted: str | None
    started: float

    def duration_ms(self) -> float:
        """Milliseconds since the callback was received."""
        return round((time.perf_counter() - self.started) * 1000, 3)


@dataclass(frozen=True)
class Applied:
    """What a callback did: ``applied`` or ``duplicate``, and to which lead and request."""

    result: str
    lead_id: str
    workspace_id: str
    request_id: str
    kind: str
    status: str
    decision: Decision


@dataclass
class _Req:
    """A request row as read for a callback."""

    id: str
    kind: str
    status: str
    reason: str | None
    result_value: str | None


@dataclass(frozen=True)
class _Lead:
    """The lead a callback is about, with its workspace settings (raw JSON)."""

    lead_id: str
    workspace_id: str
    email: str | None
    linkedin_url: str | None
    phone: str | None
    enrichment_status: str
    settings: Any


async def _lead_rows(tx: RawTx, lead_id: str) -> list[dict[str, Any]]:
    """The lead's rows (one per request), read while holding the lead's row lock.

    Two callbacks for one lead serialize on that lock, so each applies exactly once and
    the rollup sees the other's result. On PostgreSQL the lock is taken by a statement of
    its own and the rows are read by the next one: under READ COMMITTED a locking SELECT
    that waited re-reads only the locked lead row, while joined request rows would stay
    as they were before the other callback committed. SQLite needs no lock: writers are
    serialized from BEGIN IMMEDIATE on.
    """
    if tx.dialect == "postgresql" and not await tx.fetch(LOCK_LEAD, lead_id):
        return []
    return await tx.fetch(LOCATE, lead_id)


async def _find_by_identity(
    tx: RawTx, cred: Credential, fields: CallbackFields
) -> list[dict[str, Any]]:
    """Leads a callback without ids points at: by email, or for phone by LinkedIn URL."""
    probes: list[tuple[Query, Query, str]] = []
    # A hint that does not normalize identifies nobody: it is skipped, not an error.
    if fields.email:
        with contextlib.suppress(InvalidValue):
            probes.append((LEADS_BY_EMAIL, LEADS_BY_EMAIL_IN, normalize_email(fields.email)))
    if fields.kind != "linkedin" and isinstance(fields.linkedin_raw, str):
        with contextlib.suppress(InvalidValue):
            key = linkedin_match_key(normalize_linkedin_url(fields.linkedin_raw))
            probes.append((LEADS_BY_LINKEDIN, LEADS_BY_LINKEDIN_IN, key))
    for anywhere, within, value in probes:
        if cred.workspace_id is None:
            found = await tx.fetch(anywhere, value)
        else:
            found = await tx.fetch(within, value, cred.workspace_id)
        if len(found) > 1:
            raise ClayloopError(
                422,
                "ambiguous_lead",
                f"{len(found)} leads match this callback's email/LinkedIn URL; "
                "add request_id or lead_id to the Clay HTTP API action body",
            )
        if found:
            return await _lead_rows(tx, found[0]["id"])
    raise ClayloopError(
        404,
        "unknown_lead",
        "no lead matches this callback: it carries no request_id or lead_id, "
        "and no lead has its email" + (" or LinkedIn URL" if fields.kind != "linkedin" else ""),
    )


async def _locate(
    tx: RawTx, cred: Credential, fields: CallbackFields
) -> tuple[list[dict[str, Any]], str | None]:
    """The lead's rows (one per request) and the request id named by the payload, if any."""
    if fields.request_id is not None:
        if not is_uuid(fields.request_id):
            raise ClayloopError(404, "unknown_request", "request_id is not a known request")
        owner_query = LOCK_LEAD_OF_REQUEST if tx.dialect == "postgresql" else LEAD_OF_REQUEST
        owner = await tx.fetch(owner_query, fields.request_id)
        rows = await tx.fetch(LOCATE, owner[0]["id"]) if owner else []
        if not rows:
            raise ClayloopError(404, "unknown_request", "request_id is not a known request")
        return rows, fields.request_id
    if fields.lead_id is not None:
        if not is_uuid(fields.lead_id):
            raise ClayloopError(404, "unknown_lead", "lead_id is not a known lead")
        rows = await _lead_rows(tx, fields.lead_id)
        if not rows:
            raise ClayloopError(404, "unknown_lead", "lead_id is not a known lead")
        return rows, None
    return await _find_by_identity(tx, cred, fields), None


def _choose_request(rows: list[dict[str, Any]], named: str | None, fields: CallbackFields) -> _Req:
    requests = [
        _Req(r["request_id"], r["kind"], r["status"], r["reason"], r["result_value"])
        for r in rows
        if r["request_id"] is not None
    ]
    if named is not None:
        req = next(r for r in requests if r.id == named)
        # Only a declared kind can contradict the request; value columns are mere hints.
        if fields.kind_declared and fields.kind != req.kind:
            raise ClayloopError(
                422,
                "kind_mismatch",
                f"the payload says {fields.kind!r} but request {req.id} is a {req.kind!r} request",
            )
        return req
    kind = _resolve_kind(fields, {r.kind for r in requests if r.status in OPEN})
    latest = pick_latest(requests)
    if kind not in latest:
        raise ClayloopError(
            404, "unknown_request", f"this lead has no {kind} enrichment request to complete"
        )
    chosen: _Req = latest[kind]
    return chosen


def _resolve_kind(fields: CallbackFields, open_kinds: set[str]) -> str:
    """The kind a callback without a request_id completes.

    A declared kind wins. Otherwise the value columns present are only a hint: a phone
    table's callback may carry the lead's LinkedIn URL as its identity and no phone at
    all when nothing was found. So: the one open kind whose value column is present;
    else the lead's only open kind; else the only kind whose column is present (a late
    callback for a closed request); else the callback is ambiguous.
    """
    if fields.kind_declared and fields.kind is not None:
        return fields.kind
    keyed = {
        k
        for k, present in (("linkedin", fields.has_linkedin_key), ("phone", fields.has_phone_key))
        if present
    }
    for candidates in (open_kinds & keyed, open_kinds, keyed):
        if len(candidates) == 1:
            return next(iter(candidates))
    raise ClayloopError(
        422,
        "ambiguous_kind",
        "cannot tell whether this is a linkedin or a phone result: add "
        '"enrichment_type" to the body',
    )


def _transition(current: str, outcome: str) -> bool:
    """Whether a callback with ``outcome`` changes a request in ``current`` status.

    Open requests take any outcome (a worker may crash after Clay accepted the row);
    a success upgrades a miss; nothing downgrades an enriched request.
    """
    if current in OPEN:
        return True
    return current != "enriched" and outcome == "enriched"


@lru_cache(maxsize=256)
def _settings(raw: str | None) -> WorkspaceSettings:
    # Settings arrive as JSON text with every callback; parse each distinct text once.
    return load_settings(json.loads(raw) if raw else None)


@dataclass(frozen=True)
class _Plan:
    """What a callback will do to the request it completes, decided from the rows read."""

    rows: list[dict[str, Any]]
    head: _Lead
    req: _Req
    decision: Decision

    def changes(self) -> bool:
        return _transition(self.req.status, self.decision.outcome)

    def answer(self, result: str) -> Applied:
        status = self.decision.outcome if result == "applied" else self.req.status
        return Applied(
            result,
            self.head.lead_id,
            self.head.workspace_id,
            self.req.id,
            self.req.kind,
            status,
            self.decision,
        )


def _plan(
    rows: list[dict[str, Any]],
    named: str | None,
    cred: Credential,
    fields: CallbackFields,
    token_key: str,
) -> _Plan:
    """Check a callback against the lead's rows and interpret it; raises what it answers."""
    first = rows[0]
    head = _Lead(
        lead_id=first["lead_id"],
        workspace_id=first["workspace_id"],
        email=first["email"],
        linkedin_url=first["linkedin_url"],
        phone=first["phone"],
        enrichment_status=first["enrichment_status"],
        settings=first["settings"],
    )
    if cred.workspace_id is not None and head.workspace_id != cred.workspace_id:
        # Same answer as an unknown id: a credential never learns about other workspaces.
        raise ClayloopError(404, "unknown_request" if named else "unknown_lead", "not found")
    req = _choose_request(rows, named, fields)
    raw_settings = head.settings
    settings = _settings(
        raw_settings if isinstance(raw_settings, str) else json.dumps(raw_settings)
    )
    if fields.callback_token is not None:
        if not _token_matches(fields.callback_token, callback_token(token_key, req.id)):
            raise ClayloopError(
                401, "invalid_callback_token", "callback_token was not issued for this request"
            )
    elif settings.require_callback_token:
        raise ClayloopError(
            401,
            "missing_callback_token",
            "this workspace requires the callback_token column in the callback body",
        )
    decision = decide(fields, req.kind, settings.default_region)  # type: ignore[arg-type]
    decision = replace(decision, reason=_storable_text(decision.reason))
    return _Plan(rows, head, req, decision)


async def apply_callback(
    tx: RawTx,
    *,
    cred: Credential,
    fields: CallbackFields,
    token_key: str,
    now: datetime,
    journal: Journal,
) -> Applied:
    """Find the request a callback completes and apply it in the caller's transaction.

    An applied callback is journaled here, with its writes; a duplicate is journaled by
    the caller (the journal row is the only thing it writes).
    """
    rows, named = await _locate(tx, cred, fields)
    plan = _plan(rows, named, cred, fields, token_key)
    if not plan.changes():
        return plan.answer("duplicate")
    await _write(tx, plan, now, journal)
    return plan.answer("applied")


class UnlockedPath:
    """PostgreSQL: where :func:`apply_unlocked` reads and writes.

    Reads run on the callback pool. Writes are group-committed: concurrent callbacks'
    guarded writes go out as one ``APPLY_PG_IF_UNCHANGED`` statement per batch, at
    most ``lanes`` batches at once (see :class:`clayloop.kit.batching.Coalescer`).
    """

    def __init__(self, hot: HotPath, *, lanes: int, max_items: int = 64) -> None:
        self.hot = hot
        self.writes: Coalescer[_Write, bool] = Coalescer(
            self._write_batch, lanes=lanes, max_items=max_items
        )

    async def _write_batch(self, writes: list[_Write]) -> list[bool]:
        metrics.CALLBACK_WRITE_BATCH.observe(len(writes))
        try:
            async with self.hot.autocommit() as conn:
                return await write_batch(conn, writes, guarded=True)
        except Exception as exc:
            if len(writes) == 1:
                raise
            # One callback's bad value must not fail the others: each is retried on the
            # locked path, alone, where only the bad one fails.
            log.warning("callback_batch_failed", size=len(writes), error_type=type(exc).__name__)
            return [False] * len(writes)


async def apply_unlocked(
    path: UnlockedPath,
    *,
    cred: Credential,
    fields: CallbackFields,
    token_key: str,
    now: datetime,
    journal: Journal,
) -> Applied | None:
    """PostgreSQL, a callback that names its request: apply it without a lock held.

    The lead and its requests are read without a lock, the callback is decided from
    them, and its writes join the next batch, which writes a callback only if none of
    what was read has changed and no other transaction holds the rows
    (``APPLY_PG_IF_UNCHANGED``). When its write is declined (a concurrent callback or
    send on the same lead), or the request is not found, this returns None and the
    caller runs :func:`apply_callback`, which waits for the lead's lock: same answers,
    same rules. A duplicate is decided from the committed rows it read; the statuses
    that make one are final.
    """
    if fields.request_id is None or not is_uuid(fields.request_id):
        return None
    async with path.hot.autocommit() as conn:
        rows = await conn.fetch(LOCATE_BY_REQUEST, fields.request_id)
    if not rows:
        return None
    plan = _plan(rows, fields.request_id, cred, fields, token_key)
    if not plan.changes():
        return plan.answer("duplicate")
    write = prepare_write(plan, now, journal)
    if await path.writes.submit(write.row.lead_id, write):
        return plan.answer("applied")
    return None


class _Row(NamedTuple):
    """One element of each per-callback column of APPLY_PG ($1 … $16), in that order."""

    request_id: str
    outcome: str
    reason: str | None
    value: str | None
    at: datetime
    fill_field: str | None
    fill: str | None
    linkedin_key: str | None
    rollup: str
    lead_id: str
    workspace_id: str
    kind: str
    auth_method: str
    body_sha256: str
    body_redacted: str | None
    duration_ms: float


@dataclass(frozen=True)
class _Write:
    """The writes of one applied callback, as parameters of the PostgreSQL statements."""

    row: _Row
    # (event, field, old_value, new_value, detail) per history row.
    events: list[tuple[Any, ...]]
    # The lead as read (email, phone, linkedin_url, rollup) and its requests (id, status).
    guard: tuple[Any, ...]
    seen: list[tuple[str, str]]


def prepare_write(plan: _Plan, now: datetime, journal: Journal) -> _Write:
    """Decide what an applied callback writes: request, lead fill, rollup, history."""
    rows, head, req, decision = plan.rows, plan.head, plan.req, plan.decision
    # The reason is Clay's text, not a value of the field: kept in detail, never masked.
    events = [("enrichment_" + decision.outcome, req.kind, None, None, decision.reason)]
    field = KIND_FIELD[req.kind]
    fill: str | None = None
    if decision.outcome == "enriched" and decision.value is not None:
        current = getattr(head, field)
        if not current:
            fill = decision.value
            events.append(_event("field_set", field, None, decision.value))
        elif not _same(field, current, decision.value):
            # Fill-only: the stored value wins, and the disagreement is recorded.
            events.append(_event("conflict", field, current, decision.value))
    requests = [r for r in rows if r["request_id"] is not None]
    latest = pick_for_rollup(
        _Req(
            r["request_id"],
            r["kind"],
            decision.outcome if r["request_id"] == req.id else r["status"],
            None,
            None,
        )
        for r in requests
    )
    status = rollup(bool(head.email), [r.status for r in latest.values()])
    row = _Row(
        request_id=req.id,
        outcome=decision.outcome,
        reason=decision.reason,
        value=decision.value,
        at=now,
        fill_field=field if fill is not None else None,
        fill=fill,
        linkedin_key=(
            linkedin_match_key(fill) if fill is not None and field == "linkedin_url" else None
        ),
        rollup=status,
        lead_id=head.lead_id,
        workspace_id=head.workspace_id,
        kind=req.kind,
        auth_method=journal.auth_method,
        body_sha256=journal.body_sha256,
        body_redacted=journal.body_redacted,
        duration_ms=journal.duration_ms(),
    )
    return _Write(
        row=row,
        events=events,
        guard=(head.email, head.phone, head.linkedin_url, head.enrichment_status),
        seen=[(r["request_id"], r["status"]) for r in requests],
    )


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column lists (array parameters), empty lists for no rows."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


async def write_batch(conn: RawTx, writes: Sequence[_Write], *, guarded: bool) -> list[bool]:
    """PostgreSQL: write applied callbacks in one statement; which of them were written.

    ``guarded``: write each only if its rows are as read and unlocked (apply_unlocked);
    otherwise the caller holds every lead's lock and all are written (apply_callback).
    """
    params = _columns([w.row for w in writes], len(_Row._fields))
    params += _columns([(n, *e) for n, w in enumerate(writes, 1) for e in w.events], 6)
    query = APPLY_PG
    if guarded:
        query = APPLY_PG_IF_UNCHANGED
        params += _columns([w.guard for w in writes], 4)
        params += _columns([(n, *s) for n, w in enumerate(writes, 1) for s in w.seen], 3)
    written = {r["n"] for r in await conn.fetch(query, *params)}
    return [n in written for n in range(1, len(writes) + 1)]


async def _write(tx: RawTx, plan: _Plan, now: datetime, journal: Journal) -> None:
    """Write an applied callback under its lead's lock, in the caller's transaction."""
    write = prepare_write(plan, now, journal)
    if tx.dialect == "postgresql":
        await write_batch(tx, [write], guarded=False)
        return
    row = write.row
    await tx.execute(CLOSE_REQUEST, row.request_id, row.outcome, row.reason, row.value, now)
    if row.fill_field == "phone":
        await tx.execute(FILL_PHONE, row.lead_id, row.fill, row.rollup, now)
    elif row.fill_field is not None:
        await tx.execute(FILL_LINKEDIN, row.lead_id, row.fill, row.linkedin_key, row.rollup, now)
    elif row.rollup != plan.head.enrichment_status:
        await tx.execute(SET_STATUS, row.lead_id, row.rollup, now)
    await tx.executemany(
        INSERT_LEAD_EVENT,
        [
            (
                row.lead_id,
                row.workspace_id,
                now,
                event,
                name,
                old,
                new,
                "clay_callback",
                row.request_id,
                note,
            )
            for event, name, old, new, note in write.events
        ],
    )
    await tx.execute(
        INSERT_JOURNAL,
        now,
        row.workspace_id,
        row.request_id,
        row.lead_id,
        row.kind,
        row.auth_method,
        "applied",
        200,
        row.body_sha256,
        row.body_redacted,
        row.reason,
        row.duration_ms,
    )


def _storable_text(text: str | None) -> str | None:
    """``text`` as both databases can store it: no NUL character, no unpaired surrogate.

    JSON can carry both (``\\u0000``, ``\\ud800``); PostgreSQL refuses the first and
    neither driver can encode the second, which would turn a callback into a 500.
    """
    if text is None:
        return None
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _token_matches(given: str, expected: str) -> bool:
    # surrogatepass: a token holding an unpaired surrogate is simply wrong, not an error.
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def _same(field: str, a: str, b: str) -> bool:
    if field == "linkedin_url":
        return linkedin_match_key(a) == linkedin_match_key(b)
    return a == b


def _event(event: str, field: str, old: str | None, new: str | None) -> tuple[Any, ...]:
    """One history row of a field (event, field, old, new, detail), masked for email and phone."""
    return (event, field, mask_value(field, old), mask_value(field, new), None)
