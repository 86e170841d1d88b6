"""Applying a Clay callback to the lead it belongs to, exactly once, in one transaction."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clayloop import models as m
from clayloop.clay.auth import Credential
from clayloop.clay.payloads import CallbackFields, Decision, decide
from clayloop.enrichment.policy import KIND_FIELD, OPEN, rollup
from clayloop.enrichment.requests import pick_latest
from clayloop.kit.errors import ClayloopError
from clayloop.kit.ids import callback_token, is_uuid
from clayloop.kit.redact import mask_value
from clayloop.leads.normalize import (
    InvalidValue,
    linkedin_match_key,
    normalize_email,
    normalize_linkedin_url,
)
from clayloop.workspaces.schemas import load_settings

R = m.enrichment_request
L = m.lead

# The columns a callback needs: the lead's identity and every request of the lead.
_LOCATE_COLUMNS = (
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


def _locate_query(where: Any) -> Any:
    return (
        sa.select(*_LOCATE_COLUMNS)
        .select_from(
            L.join(m.workspace, m.workspace.c.id == L.c.workspace_id).outerjoin(
                R, R.c.lead_id == L.c.id
            )
        )
        .where(where)
        .order_by(R.c.created_at, R.c.id)
    )


async def _lead_rows(conn: AsyncConnection, where: Any) -> list[Any]:
    """The lead's rows (one per request), read while holding the lead's row lock.

    Two callbacks for one lead serialize on that lock, so each applies exactly once and
    the rollup sees the other's result. On PostgreSQL the lock is taken by a statement of
    its own and the rows are read by the next one: under READ COMMITTED a locking SELECT
    that waited re-reads only the locked lead row, while the joined request rows stay as
    they were when the statement started, before the other callback committed. SQLite
    needs no lock: writers are serialized from BEGIN IMMEDIATE on.
    """
    if conn.dialect.name == "postgresql":
        locked = await conn.execute(sa.select(L.c.id).where(where).with_for_update())
        if locked.first() is None:
            return []
    return list((await conn.execute(_locate_query(where))).all())


async def _find_by_identity(
    conn: AsyncConnection, cred: Credential, fields: CallbackFields
) -> list[Any]:
    """Leads a callback without ids points at: by email, or for phone by LinkedIn URL."""
    scope = [] if cred.workspace_id is None else [L.c.workspace_id == cred.workspace_id]
    probes: list[Any] = []
    if fields.email:
        try:
            email = normalize_email(fields.email)
        except InvalidValue:
            email = None
        if email:
            alt = sa.select(m.lead_alternate_email.c.lead_id).where(
                m.lead_alternate_email.c.email == email
            )
            probes.append(sa.or_(L.c.email == email, L.c.id.in_(alt)))
    if fields.kind != "linkedin" and isinstance(fields.linkedin_raw, str):
        try:
            key = linkedin_match_key(normalize_linkedin_url(fields.linkedin_raw))
        except InvalidValue:
            key = None
        if key:
            probes.append(L.c.linkedin_key == key)
    for probe in probes:
        ids = (await conn.execute(sa.select(L.c.id).where(probe, *scope).limit(50))).scalars()
        found = list(ids)
        if len(found) > 1:
            raise ClayloopError(
                422,
                "ambiguous_lead",
                f"{len(found)} leads match this callback's email/LinkedIn URL; "
                "add request_id or lead_id to the Clay HTTP API action body",
            )
        if found:
            return await _lead_rows(conn, L.c.id == found[0])
    raise ClayloopError(
        404,
        "unknown_lead",
        "no lead matches this callback: it carries no request_id or lead_id, "
        "and no lead has its email" + (" or LinkedIn URL" if fields.kind != "linkedin" else ""),
    )


async def _locate(
    conn: AsyncConnection, cred: Credential, fields: CallbackFields
) -> tuple[list[Any], str | None]:
    """The lead's rows (one per request) and the request id named by the payload, if any."""
    if fields.request_id is not None:
        if not is_uuid(fields.request_id):
            raise ClayloopError(404, "unknown_request", "request_id is not a known request")
        owner = sa.select(R.c.lead_id).where(R.c.id == fields.request_id).scalar_subquery()
        rows = await _lead_rows(conn, L.c.id == owner)
        if not rows:
            raise ClayloopError(404, "unknown_request", "request_id is not a known request")
        return rows, fields.request_id
    if fields.lead_id is not None:
        if not is_uuid(fields.lead_id):
            raise ClayloopError(404, "unknown_lead", "lead_id is not a known lead")
        rows = await _lead_rows(conn, L.c.id == fields.lead_id)
        if not rows:
            raise ClayloopError(404, "unknown_lead", "lead_id is not a known lead")
        return rows, None
    return await _find_by_identity(conn, cred, fields), None


def _choose_request(rows: list[Any], named: str | None, fields: CallbackFields) -> _Req:
    requests = [
        _Req(r.request_id, r.kind, r.status, r.reason, r.result_value)
        for r in rows
        if r.request_id is not None
    ]
    if named is not None:
        req = next(r for r in requests if r.id == named)
        if fields.kind is not None and fields.kind != req.kind:
            raise ClayloopError(
                422,
                "kind_mismatch",
                f"the payload says {fields.kind!r} but request {req.id} is a {req.kind!r} request",
            )
        return req
    kind: str | None = fields.kind
    if kind is None:
        open_kinds = {r.kind for r in requests if r.status in OPEN}
        if len(open_kinds) != 1:
            raise ClayloopError(
                422,
                "ambiguous_kind",
                "cannot tell whether this is a linkedin or a phone result: add "
                '"enrichment_type" to the body, or send only that kind\'s value column',
            )
        kind = open_kinds.pop()
    latest = pick_latest(requests)
    if kind not in latest:
        raise ClayloopError(
            404, "unknown_request", f"this lead has no {kind} enrichment request to complete"
        )
    chosen: _Req = latest[kind]
    return chosen


def _transition(current: str, outcome: str) -> bool:
    """Whether a callback with ``outcome`` changes a request in ``current`` status.

    Open requests take any outcome (a worker may crash after Clay accepted the row);
    a success upgrades a miss; nothing downgrades an enriched request.
    """
    if current in OPEN:
        return True
    return current != "enriched" and outcome == "enriched"


async def apply_callback(
    conn: AsyncConnection,
    *,
    cred: Credential,
    fields: CallbackFields,
    token_key: str,
    now: datetime,
) -> Applied:
    """Find the request a callback completes and apply it in the caller's transaction."""
    rows, named = await _locate(conn, cred, fields)
    head = rows[0]
    if cred.workspace_id is not None and head.workspace_id != cred.workspace_id:
        # Same answer as an unknown id: a credential never learns about other workspaces.
        raise ClayloopError(404, "unknown_request" if named else "unknown_lead", "not found")
    req = _choose_request(rows, named, fields)
    settings = load_settings(head.settings)
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
    if not _transition(req.status, decision.outcome):
        return Applied(
            "duplicate", head.lead_id, head.workspace_id, req.id, req.kind, req.status, decision
        )
    await _write(conn, rows, head, req, decision, now)
    return Applied(
        "applied", head.lead_id, head.workspace_id, req.id, req.kind, decision.outcome, decision
    )


async def _write(
    conn: AsyncConnection, rows: list[Any], head: Any, req: _Req, decision: Decision, now: datetime
) -> None:
    await conn.execute(
        sa.update(R)
        .where(R.c.id == req.id)
        .values(
            status=decision.outcome,
            reason=decision.reason,
            result_value=decision.value,
            completed_at=now,
            updated_at=now,
            lease_until=None,
            lease_owner=None,
        )
    )
    outcome_event = _event(head, now, "enrichment_" + decision.outcome, req, req.kind, None, None)
    # The reason is Clay's text, not a value of the field: kept as it is, never masked away.
    outcome_event["detail"] = decision.reason
    events: list[dict[str, Any]] = [outcome_event]
    lead_changes: dict[str, Any] = {}
    field = KIND_FIELD[req.kind]
    if decision.outcome == "enriched" and decision.value is not None:
        current = getattr(head, field)
        if not current:
            lead_changes[field] = decision.value
            if field == "linkedin_url":
                lead_changes["linkedin_key"] = linkedin_match_key(decision.value)
            events.append(_event(head, now, "field_set", req, field, None, decision.value))
        elif _same(field, current, decision.value):
            pass
        else:
            # Fill-only: the stored value wins, and the disagreement is recorded.
            events.append(_event(head, now, "conflict", req, field, current, decision.value))
    latest = pick_latest(
        _Req(
            r.request_id,
            r.kind,
            decision.outcome if r.request_id == req.id else r.status,
            None,
            None,
        )
        for r in rows
        if r.request_id is not None
    )
    status = rollup(bool(head.email), [r.status for r in latest.values()])
    if status != head.enrichment_status:
        lead_changes["enrichment_status"] = status
    if lead_changes:
        lead_changes["updated_at"] = now
        await conn.execute(sa.update(L).where(L.c.id == head.lead_id).values(**lead_changes))
    await conn.execute(sa.insert(m.lead_event), events)


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


def _event(
    head: Any,
    now: datetime,
    event: str,
    req: _Req,
    field: str | None,
    old: str | None,
    new: str | None,
) -> dict[str, Any]:
    masked_field = field or ""
    return {
        "lead_id": head.lead_id,
        "workspace_id": head.workspace_id,
        "created_at": now,
        "event": event,
        "field": field,
        "old_value": mask_value(masked_field, old),
        "new_value": mask_value(masked_field, new) if field else new,
        "source": "clay_callback",
        "request_id": req.id,
        "detail": None,
    }
