"""POST /api/webhooks/clay: the Clay callback endpoint (the hot path).

Authenticate before parsing, bound the body, interpret it, apply it in one
transaction, journal it, answer. No ORM objects and no pydantic on the way in:
the body is read raw so the credential can be checked over the exact bytes.
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from clayloop.clay.auth import Credential
from clayloop.clay.payloads import CallbackError, CallbackFields, extract_callback
from clayloop.enrichment.callbacks import (
    INSERT_JOURNAL,
    Applied,
    Journal,
    apply_callback,
    apply_unlocked,
)
from clayloop.enrichment.policy import KIND_FIELD
from clayloop.kit import metrics
from clayloop.kit.clock import utcnow
from clayloop.kit.errors import ClayloopError
from clayloop.kit.log import get_logger
from clayloop.kit.rawsql import RawTx
from clayloop.kit.redact import mask_email, mask_value, redact_mapping
from clayloop.kit.runtime import Runtime
from clayloop.leads.schemas import error_responses

router = APIRouter(tags=["callbacks"])
CALLBACK_PATH = "/api/webhooks/clay"
log = get_logger("callback")

MAX_DEPTH = 32
JOURNAL_BODY_CHARS = 8000


class CallbackOut(BaseModel):
    """What the callback endpoint answers when a callback is accepted."""

    result: str = Field(description="applied, or duplicate when it changed nothing")
    lead_id: str
    kind: str = Field(examples=["phone"])
    status: str = Field(description="the request's status afterwards", examples=["enriched"])


REQUEST_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "One JSON object (any Content-Type; text/plain is fine), at most 256 KiB. "
            "Authenticate with the callback secret in x-clay-signature, x-webhook-signature, "
            "x-clay-secret, x-webhook-secret or Authorization: Bearer, or with HMAC-SHA256 "
            "of the raw body (hex or base64, optional sha256= prefix) in x-clay-signature / "
            "x-webhook-signature. See docs/clay-setup.md for every accepted shape."
        ),
        "content": {
            "application/json": {
                "schema": {"type": "object", "additionalProperties": True},
                "example": {
                    "request_id": "0b6f0c1e-6a7e-4f55-9d0c-2a9f1e3b4c5d",
                    "lead_id": "5e8b1f7a-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
                    "enrichment_type": "phone",
                    "callback_token": "…",
                    "success": True,
                    "phone": "+1 415 555 0132",
                },
            }
        },
    }
}


_WRITES_LOCKED = metrics.CALLBACK_WRITES.labels("locked")
_WRITES_UNLOCKED = metrics.CALLBACK_WRITES.labels("unlocked")


@lru_cache(maxsize=512)
def _callbacks(outcome: str, kind: str) -> Any:
    """The labelled counter of (outcome, kind), looked up once per pair: both come from
    short fixed lists (outcomes are our error codes, kinds are normalized by then)."""
    return metrics.CALLBACKS.labels(outcome, kind)


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _depth_ok(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def _parse(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ClayloopError(
            400, "invalid_json", "the body is not valid JSON (check the Clay action's Body field)"
        ) from exc
    if not isinstance(obj, dict):
        raise ClayloopError(
            400, "not_an_object", f"the body must be one JSON object, not {_json_type(obj)}"
        )
    if not _depth_ok(obj):
        raise ClayloopError(400, "too_deep", f"the body nests deeper than {MAX_DEPTH} levels")
    return obj


def _json_type(obj: Any) -> str:
    if isinstance(obj, list):
        return "an array"
    if isinstance(obj, str):
        return "a string"
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "a boolean"
    return "a number"


def _redacted(obj: dict[str, Any] | None) -> str | None:
    if obj is None:
        return None
    return json.dumps(redact_mapping(obj), default=str)[:JOURNAL_BODY_CHARS]


def _journal_row(
    *,
    outcome: str,
    status: int,
    cred: Credential | None,
    body: bytes | None,
    obj: dict[str, Any] | None,
    applied: Applied | None,
    fields: CallbackFields | None,
    error: str | None,
    started: float,
) -> tuple[Any, ...]:
    """The INSERT_JOURNAL parameters for one callback."""
    return (
        utcnow(),
        applied.workspace_id if applied else (cred.workspace_id if cred else None),
        applied.request_id if applied else None,
        applied.lead_id if applied else None,
        applied.kind if applied else (fields.kind if fields else None),
        cred.method if cred else None,
        outcome,
        status,
        hashlib.sha256(body).hexdigest() if body is not None else None,
        # A body is journaled (redacted) only once the sender proved it knows a secret.
        _redacted(obj) if cred else None,
        error,
        round((time.perf_counter() - started) * 1000, 3),
    )


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


@router.post(
    CALLBACK_PATH,
    summary="Receive a Clay HTTP API action callback",
    response_model=CallbackOut,
    responses=error_responses(400, 401, 404, 413, 422),
    openapi_extra=REQUEST_BODY_DOC,
)
async def clay_callback(request: Request) -> JSONResponse:
    """Apply one enrichment result from Clay to the lead it belongs to.

    Answers 200 ``{"result": "applied" | "duplicate", "lead_id", "kind", "status"}``;
    401 for a missing or wrong credential (nothing changes, the body is not kept);
    413 over 256 KiB; 400 for a body that is not one JSON object; 404
    ``unknown_request`` / ``unknown_lead``; 422 ``ambiguous_lead``, ``ambiguous_kind``,
    ``unknown_status``, ``unknown_kind``, ``invalid_success``, ``kind_mismatch``.
    """
    runtime: Runtime = request.app.state.runtime
    started = time.perf_counter()
    cred: Credential | None = None
    body: bytes | None = None
    obj: dict[str, Any] | None = None
    fields: CallbackFields | None = None
    try:
        try:
            body = await _read_body(request, runtime.settings.max_callback_bytes)
        except _TooLarge:
            raise ClayloopError(
                413,
                "body_too_large",
                f"callback bodies are limited to {runtime.settings.max_callback_bytes} bytes",
            ) from None
        cred = await runtime.secrets.verify(request.headers, body)
        if cred is None:
            if not runtime.secrets.configured:
                raise ClayloopError(
                    401,
                    "unauthorized",
                    "no callback secret is configured on this server, so every callback is "
                    "refused; set CLAYLOOP_CALLBACK_SECRETS or add a workspace secret",
                )
            raise ClayloopError(
                401,
                "unauthorized",
                "missing or wrong callback credential: send the callback secret in the "
                "x-clay-signature header (see docs/clay-setup.md)",
            )
        obj = _parse(body)
        try:
            fields = extract_callback(obj)
        except CallbackError as exc:
            raise ClayloopError(exc.status, exc.code, exc.detail) from exc
        journal = Journal(
            auth_method=cred.method,
            body_sha256=hashlib.sha256(body).hexdigest(),
            body_redacted=_redacted(obj),
            started=started,
        )
        # Unlocked first (PostgreSQL: a read, then a write group-committed with other
        # callbacks'); under the lead's lock when that declines, or on SQLite. Either
        # way a duplicate writes only its journal row.
        args: dict[str, Any] = {
            "cred": cred,
            "fields": fields,
            "token_key": runtime.token_key,
            "now": utcnow(),
            "journal": journal,
        }
        applied = None
        locked = False
        hot = runtime.hot
        if hot.dialect == "postgresql":
            applied = await apply_unlocked(runtime.unlocked, **args)
            if applied is not None and applied.result == "duplicate":
                async with hot.autocommit() as conn:
                    await _journal_duplicate(conn, applied, cred, body, obj, fields, started)
        if applied is None:
            locked = True
            async with hot.transaction() as tx:
                applied = await apply_callback(tx, **args)
                if applied.result == "duplicate":
                    await _journal_duplicate(tx, applied, cred, body, obj, fields, started)
    except ClayloopError as exc:
        await _journal_failure(runtime, exc, cred, body, obj, fields, started)
        return _error(exc.status, exc.code, exc.detail)
    _log(applied, cred, fields, 200, started)
    _callbacks(applied.result, applied.kind).inc()
    if applied.result == "applied":
        (_WRITES_LOCKED if locked else _WRITES_UNLOCKED).inc()
    return JSONResponse(
        {
            "result": applied.result,
            "lead_id": applied.lead_id,
            "kind": applied.kind,
            "status": applied.status,
        }
    )


async def _journal_duplicate(
    db: RawTx,
    applied: Applied,
    cred: Credential,
    body: bytes,
    obj: dict[str, Any],
    fields: CallbackFields,
    started: float,
) -> None:
    # A duplicate writes nothing but its journal row (an applied callback is journaled
    # with its writes, in one statement).
    row = _journal_row(
        outcome=applied.result,
        status=200,
        cred=cred,
        body=body,
        obj=obj,
        applied=applied,
        fields=fields,
        error=None,
        started=started,
    )
    await db.execute(INSERT_JOURNAL, *row)


async def _journal_failure(
    runtime: Runtime,
    exc: ClayloopError,
    cred: Credential | None,
    body: bytes | None,
    obj: dict[str, Any] | None,
    fields: CallbackFields | None,
    started: float,
) -> None:
    row = _journal_row(
        outcome=exc.code,
        status=exc.status,
        cred=cred,
        body=body,
        obj=obj,
        applied=None,
        fields=fields,
        error=exc.detail[:500],
        started=started,
    )
    async with runtime.hot.transaction() as tx:
        await tx.execute(INSERT_JOURNAL, *row)
    _callbacks(exc.code, fields.kind if fields and fields.kind else "unknown").inc()
    log.warning(
        "callback",
        outcome=exc.code,
        http_status=exc.status,
        kind=fields.kind if fields else None,
        # Unverified hints, logged with any email inside masked (a mis-mapped Clay column
        # can put the lead's email where its id belongs).
        request_id=_masked(fields.request_id) if fields else None,
        lead_id=_masked(fields.lead_id) if fields else None,
        auth=cred.method if cred else None,
        email=mask_email(fields.email) if fields else None,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )


def _masked(text: str | None) -> str | None:
    """Free text for a log line, every email address in it masked."""
    if text is None:
        return None
    masked: str | None = redact_mapping(text)
    return masked


def _log(
    applied: Applied, cred: Credential, fields: CallbackFields, status: int, started: float
) -> None:
    log.info(
        "callback",
        outcome=applied.result,
        http_status=status,
        kind=applied.kind,
        status=applied.status,
        lead_id=applied.lead_id,
        request_id=applied.request_id,
        auth=cred.method,
        email=mask_email(fields.email),
        value=mask_value(KIND_FIELD[applied.kind], applied.decision.value),
        # Clay's message is free text and may quote the lead's email.
        reason=_masked(applied.decision.reason),
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
