"""A fake Clay that is a real HTTP server.

It plays both halves of Clay that clayloop talks to:

* **table webhook sources** — ``POST /v3/sources/webhook/pull-in-data-from-a-webhook-<uuid4>``
  with one JSON object per request, the optional ``x-clay-webhook-auth`` token, a 100 KB body
  cap, a token-bucket rate limit per Clay workspace (10 rows/s, bursts of 20) and a lifetime
  submission limit per webhook (50,000);
* **the HTTP API action** — some time after accepting a row it POSTs a result to the row's
  ``callback_url``, with ``Content-Type: application/json`` and a static secret header, in one of
  the body shapes people actually configure (see :data:`ROTATING_STYLES`).

Where Clay's behaviour is unknown (docs/reference "wire-formats" §4) the simulator picks
something plausible and says so:

* past the lifetime limit it answers **403** with ``{"error": "submission_limit_reached", ...}``
  (the real answer may even be a silent drop);
* the success body is ``{"status": "ok"}``; errors are ``{"error": <code>, "message": <text>}``;
* 429 carries ``Retry-After: 1`` unless ``send_retry_after`` is off;
* a JSON array body is refused with 400 (whether Clay splits arrays into rows is unconfirmed);
* checks run in this order: unknown webhook (404), auth (401), injected fault, rate limit (429,
  so refused requests still spend tokens, as at a gateway), size (413), JSON object (400),
  lifetime limit (403). Only accepted rows count towards the limit.

Each row's outcome is decided from an RNG seeded with ``(seed, request_id)``, so the same row
always gets the same answer; ``+found`` / ``+notfound`` / ``+error`` in the email's local part
override it. The ``mixed`` style and the ``placeholders`` values rotate in acceptance order.

Control API (for tests and demos), all JSON:
``POST/GET /_sim/tables``, ``POST/GET /_sim/faults``, ``POST/GET /_sim/config``,
``POST /_sim/reset``, ``GET /_sim/rows``, ``GET /_sim/stats``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import re
import threading
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal, TypeVar

import httpx
import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

WEBHOOK_PATH_PREFIX = "/v3/sources/webhook/pull-in-data-from-a-webhook-"
WEBHOOK_AUTH_HEADER = "x-clay-webhook-auth"
MAX_BODY_BYTES = 100 * 1024
DEFAULT_SUBMISSION_LIMIT = 50_000
PROVIDER_ERROR = "Provider timeout"
RESPONSE_BODY_KEEP = 4096

_M = TypeVar("_M", bound=BaseModel)

Outcome = Literal["found", "not_found", "error"]
Style = Literal[
    "success_flag", "status", "clay_columns", "placeholders", "nested", "no_ids", "mixed"
]
ConcreteStyle = Literal[
    "success_flag", "status", "clay_columns", "placeholders", "nested", "no_ids"
]

#: The styles ``mixed`` cycles through, in order.
ROTATING_STYLES: tuple[ConcreteStyle, ...] = (
    "success_flag",
    "status",
    "clay_columns",
    "placeholders",
    "nested",
    "no_ids",
)
#: What "not found" looks like in tables that write a placeholder instead of leaving it empty.
PLACEHOLDERS: tuple[str | None, ...] = ("N/A", "", None, "-")

_STATUS_WORD: dict[Outcome, str] = {"found": "success", "not_found": "not_found", "error": "error"}
# Node's http module (lib/_http_common.js): header names must be RFC 7230 tokens and header
# values may not contain control characters other than horizontal tab.
_HTTP_TOKEN = re.compile(r"^[\^_`a-zA-Z\-0-9!#$%&'*+.|~]+$")
_INVALID_HEADER_VALUE = re.compile(r"[^\t\x20-\x7e\x80-\xff]")


# --------------------------------------------------------------------------- configuration


class SimTableSpec(BaseModel):
    """A table to create when the simulator starts (or through ``POST /_sim/tables``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    auth_token: str | None = None
    workspace: str = Field(default="default", min_length=1)
    limit: int | None = Field(default=None, ge=0)


class SimConfig(BaseModel):
    """Every knob of the simulator. Fields outside :data:`STARTUP_ONLY_FIELDS` can change live."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tables: tuple[SimTableSpec, ...] = ()
    # Webhook source side.
    rate_per_s: float = Field(default=10.0, gt=0)
    burst: int = Field(default=20, ge=1)
    send_retry_after: bool = True
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1)
    submission_limit: int = Field(default=DEFAULT_SUBMISSION_LIMIT, ge=0)
    # HTTP API action side.
    callback_delay_s: float = Field(default=0.5, ge=0)
    callback_jitter_s: float = Field(default=0.0, ge=0)
    callback_secret: str | None = None
    callback_header: str = "x-clay-signature"
    callback_timeout_s: float = Field(default=10.0, gt=0)
    found: float = Field(default=0.7, ge=0)
    not_found: float = Field(default=0.2, ge=0)
    error: float = Field(default=0.1, ge=0)
    style: Style = "success_flag"
    duplicate_rate: float = Field(default=0.0, ge=0, le=1)
    late_rate: float = Field(default=0.0, ge=0, le=1)
    late_delay_s: float = Field(default=5.0, ge=0)
    drop_rate: float = Field(default=0.0, ge=0, le=1)
    misconfigured_header: str | None = None
    callback_concurrency: int = Field(default=32, ge=1)
    seed: int = 0
    record_rows: bool = True

    @field_validator("misconfigured_header")
    @classmethod
    def _empty_means_off(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _outcome_mix_not_empty(self) -> SimConfig:
        if self.found + self.not_found + self.error <= 0:
            raise ValueError("found + not_found + error must be greater than 0")
        return self


#: Fields that only take effect when the simulator is built.
STARTUP_ONLY_FIELDS = frozenset({"tables", "record_rows", "callback_concurrency"})


class FaultSpec(BaseModel):
    """Make the next ``count`` submissions (to ``table``, or to any table) misbehave."""

    model_config = ConfigDict(extra="forbid")

    table: str | None = None
    status: int | None = Field(default=None, ge=100, le=599)
    count: int = Field(default=1, ge=1)
    delay_s: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _does_something(self) -> FaultSpec:
        if self.status is None and not self.delay_s:
            raise ValueError("a fault needs a status, a delay_s, or both")
        return self


# --------------------------------------------------------------------------- state records


@dataclass
class SimTable:
    """One simulated table webhook source and its counters."""

    id: str
    name: str
    webhook_id: str
    auth_token: str | None
    workspace: str
    limit: int
    submissions: int = 0

    @property
    def path(self) -> str:
        """The webhook's URL path."""
        return f"{WEBHOOK_PATH_PREFIX}{self.webhook_id}"

    def url(self, base_url: str) -> str:
        """The webhook's absolute URL on a simulator served at ``base_url``."""
        return f"{base_url.rstrip('/')}{self.path}"

    def to_json(self, base_url: str) -> dict[str, Any]:
        """The table as the control API shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url(base_url),
            "auth_token": self.auth_token,
            "workspace": self.workspace,
            "limit": self.limit,
            "submissions": self.submissions,
        }


@dataclass
class CallbackAttempt:
    """One HTTP call to a row's callback_url: clayloop's answer or the transport error."""

    at: str
    status: int | None
    body: str | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``GET /_sim/rows``."""
        return {"at": self.at, "status": self.status, "body": self.body, "error": self.error}


@dataclass(frozen=True)
class Decision:
    """What the simulated Clay table does with one accepted row."""

    outcome: Outcome
    value: str | None
    style: ConcreteStyle
    drop: bool
    late: bool
    duplicate: bool
    delay_s: float


@dataclass
class SimRow:
    """One accepted submission and everything that happened to it afterwards."""

    seq: int
    table_id: str
    received_at: str
    data: dict[str, Any]
    decision: Decision
    callback_body: dict[str, Any]
    headers: dict[str, str] | None
    misconfig_error: str | None
    note: str | None = None
    callbacks: list[CallbackAttempt] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``GET /_sim/rows``."""
        d = self.decision
        return {
            "seq": self.seq,
            "table_id": self.table_id,
            "request_id": self.data.get("request_id"),
            "lead_id": self.data.get("lead_id"),
            "enrichment_type": self.data.get("enrichment_type"),
            "email": self.data.get("email"),
            "callback_url": self.data.get("callback_url"),
            "received_at": self.received_at,
            "outcome": d.outcome,
            "value": d.value,
            "style": d.style,
            "dropped": d.drop,
            "late": d.late,
            "duplicate": d.duplicate,
            "callback_body": self.callback_body,
            "callbacks": [a.to_json() for a in self.callbacks],
            "misconfig_error": self.misconfig_error,
            "note": self.note,
        }


@dataclass
class _Fault:
    table: str | None
    status: int | None
    remaining: int
    delay_s: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "status": self.status,
            "remaining": self.remaining,
            "delay_s": self.delay_s,
        }


class TokenBucket:
    """Classic token bucket; rate and burst are passed per call so config can change live."""

    def __init__(self, burst: int, now: float) -> None:
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float, rate: float, burst: int) -> bool:
        """Spend one token if there is one."""
        self.tokens = min(float(burst), self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


# --------------------------------------------------------------------------- pure decisions


def is_http_token(name: str) -> bool:
    """True when ``name`` is a valid header name by Node's (RFC 7230 token) rules."""
    return bool(_HTTP_TOKEN.match(name))


def header_error(headers: Mapping[str, str]) -> str | None:
    """The error Clay's HTTP API action (Node) raises for these headers, or None if they pass."""
    for name, value in headers.items():
        if not is_http_token(name):
            return f'Header name must be a valid HTTP token ["{name}"]'
        if _INVALID_HEADER_VALUE.search(value):
            return f'Invalid character in header content ["{name}"]'
    return None


def callback_headers(config: SimConfig) -> dict[str, str]:
    """The static headers the simulated HTTP API action is configured with.

    ``misconfigured_header`` is the Content-Type header's name as someone typed it into Clay
    (the classic mistake is ``Content-Type:``).
    """
    headers = {config.misconfigured_header or "Content-Type": "application/json"}
    if config.callback_secret is not None:
        headers[config.callback_header] = config.callback_secret
    return headers


def _email_local(row: Mapping[str, Any]) -> str:
    email = row.get("email")
    if not isinstance(email, str):
        return ""
    return email.split("@", 1)[0].lower()


def outcome_override(row: Mapping[str, Any]) -> Outcome | None:
    """``+found`` / ``+notfound`` / ``+error`` in the email's local part fixes the outcome."""
    local = _email_local(row)
    if "+error" in local:
        return "error"
    if "+notfound" in local:
        return "not_found"
    if "+found" in local:
        return "found"
    return None


def row_key(row: Mapping[str, Any]) -> str:
    """What a row's outcome is keyed on: its request_id, else its canonical JSON."""
    request_id = row.get("request_id")
    if isinstance(request_id, str | int) and not isinstance(request_id, bool):
        return str(request_id)
    return json.dumps(row, sort_keys=True, separators=(",", ":"), default=str)


def _slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def _text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return value.strip() if isinstance(value, str) else ""


def linkedin_for(row: Mapping[str, Any], rng: random.Random) -> str:
    """A LinkedIn profile URL whose slug comes from the row's name, or else its email."""
    name = f"{_text(row, 'first_name')} {_text(row, 'last_name')}".strip()
    name = name or _text(row, "full_name") or _email_local(row).split("+", 1)[0]
    slug = _slugify(name) or "lead"
    return f"https://www.linkedin.com/in/{slug}-{rng.getrandbits(24):06x}"


def phone_for(rng: random.Random) -> str:
    """A US number in E.164 that ``phonenumbers`` accepts as valid."""
    for _ in range(100):
        candidate = f"+1415555{rng.randrange(10_000):04d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            return candidate
    raise RuntimeError("no valid +1415555XXXX number found")  # pragma: no cover


def value_key(kind: str) -> str:
    """The flat body key that carries the found value for an enrichment kind."""
    return {"linkedin": "linkedin_url", "phone": "phone"}.get(kind, kind or "value")


def column_name(kind: str) -> str:
    """The Clay column that holds the found value for an enrichment kind."""
    return {"linkedin": "LinkedIn URL", "phone": "Mobile Phone"}.get(kind, kind.title() or "Value")


def decide(row: Mapping[str, Any], seq: int, config: SimConfig) -> Decision:
    """Decide a row's outcome, value, body style and delivery, deterministically.

    The RNG is keyed on ``(seed, request_id)`` and always drawn in the same order, so changing
    one rate does not reshuffle the other decisions for the same row.
    """
    rng = random.Random(f"{config.seed}:{row_key(row)}")
    u_outcome, u_drop, u_late, u_dup, u_jitter = (rng.random() for _ in range(5))
    total = config.found + config.not_found + config.error
    outcome: Outcome
    if u_outcome * total < config.found:
        outcome = "found"
    elif u_outcome * total < config.found + config.not_found:
        outcome = "not_found"
    else:
        outcome = "error"
    outcome = outcome_override(row) or outcome

    value: str | None = None
    if outcome == "found":
        kind = _text(row, "enrichment_type")
        if kind == "linkedin":
            value = linkedin_for(row, rng)
        elif kind == "phone":
            value = phone_for(rng)
        else:
            value = f"sim-{kind or 'value'}-{rng.getrandbits(32):08x}"

    style: ConcreteStyle = (
        ROTATING_STYLES[(seq - 1) % len(ROTATING_STYLES)]
        if config.style == "mixed"
        else config.style
    )
    late = u_late < config.late_rate
    delay = config.late_delay_s if late else config.callback_delay_s
    return Decision(
        outcome=outcome,
        value=value,
        style=style,
        drop=u_drop < config.drop_rate,
        late=late,
        duplicate=u_dup < config.duplicate_rate,
        delay_s=delay + u_jitter * config.callback_jitter_s,
    )


def callback_body(
    row: Mapping[str, Any], decision: Decision, placeholder: str | None = None
) -> dict[str, Any]:
    """The JSON body the HTTP API action sends back, in the decision's style.

    ``placeholder`` is the not-found value written by the ``placeholders`` style.
    """
    kind = _text(row, "enrichment_type")
    key = value_key(kind)
    outcome, value, style = decision.outcome, decision.value, decision.style
    ids = {
        "request_id": row.get("request_id"),
        "lead_id": row.get("lead_id"),
        "enrichment_type": row.get("enrichment_type"),
        "callback_token": row.get("callback_token"),
    }

    if style == "status":
        body = {**ids, "status": _STATUS_WORD[outcome]}
        if outcome == "found":
            body[key] = value
        elif outcome == "error":
            body["error"] = PROVIDER_ERROR
        return body

    if style == "clay_columns":
        body = {
            "Request ID": ids["request_id"],
            "Lead ID": ids["lead_id"],
            "Enrichment Type": ids["enrichment_type"],
            "Callback Token": ids["callback_token"],
            "Status": _STATUS_WORD[outcome],
        }
        if outcome == "found":
            body[column_name(kind)] = value
        return body

    if style == "no_ids":
        body = {"email": row.get("email")}
        if kind == "phone":
            body["linkedin_url"] = row.get("linkedin_url")
        if outcome == "found":
            body[key] = value
        body["success"] = outcome == "found"
        return body

    # success_flag, and the styles built on it.
    body = {**ids, "success": outcome == "found"}
    if outcome == "found":
        body[key] = value
    elif outcome == "error":
        body["error"] = PROVIDER_ERROR
    elif style == "placeholders":
        body["success"] = True
        body[key] = placeholder
    if style == "nested":
        return {"data": body}
    return body


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response with sorted keys, so identical state renders identically."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return Response(text, status_code=status, headers=headers, media_type="application/json")


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    return _json({"error": code, "message": message}, status, headers)


class _BodyTooLarge(Exception):
    pass


async def _read_capped(request: Request, limit: int) -> bytes:
    """Read the body, raising _BodyTooLarge past ``limit`` bytes (after draining the rest)."""
    declared = request.headers.get("content-length")
    too_large = declared is not None and declared.isdigit() and int(declared) > limit
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            too_large = True
        if not too_large:
            chunks.append(chunk)
    if too_large:
        raise _BodyTooLarge
    return b"".join(chunks)


# --------------------------------------------------------------------------- the simulator


class ClaySimulator:
    """Holds the simulated Clay's tables, counters and pending callbacks; serves them over ASGI.

    Safe to inspect (``rows()``, ``stats()``) and to drive (``add_table``, ``inject_fault``,
    ``update_config``, ``reset``) from another thread while the app runs in its own loop.
    """

    def __init__(self, config: SimConfig | None = None, *, public_url: str | None = None) -> None:
        self._config = config or SimConfig()
        self.public_url = public_url
        self._lock = threading.Lock()
        self._ids = random.Random(f"{self._config.seed}:tables")
        self._tables: dict[str, SimTable] = {}
        self._by_webhook: dict[str, SimTable] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._faults: list[_Fault] = []
        self._rows: list[SimRow] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._generation = 0
        self._client: httpx.AsyncClient | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._reset_counters()
        for spec in self._config.tables:
            self.add_table(
                spec.name, auth_token=spec.auth_token, workspace=spec.workspace, limit=spec.limit
            )

    def _reset_counters(self) -> None:
        self._seq = 0
        self._placeholder_seq = 0
        self._accepted = 0
        self._rejected: Counter[str] = Counter()
        self._outcomes: Counter[str] = Counter()
        self._callbacks_sent = 0
        self._callbacks_by_status: Counter[str] = Counter()
        self._callback_errors = 0
        self._misconfig_errors = 0
        self._dropped = 0
        self._late = 0
        self._duplicates = 0
        self._no_callback_url = 0

    # ------------------------------------------------------------------ public API

    @property
    def config(self) -> SimConfig:
        """The configuration in force now."""
        return self._config

    def add_table(
        self,
        name: str,
        *,
        auth_token: str | None = None,
        workspace: str = "default",
        limit: int | None = None,
    ) -> SimTable:
        """Create a table webhook source; ids and webhook UUIDs follow the seed."""
        with self._lock:
            webhook_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
            table = SimTable(
                id=f"tbl_{self._ids.getrandbits(48):012x}",
                name=name,
                webhook_id=webhook_id,
                auth_token=auth_token,
                workspace=workspace,
                limit=self._config.submission_limit if limit is None else limit,
            )
            self._tables[table.id] = table
            self._by_webhook[webhook_id] = table
            return table

    def tables(self) -> list[SimTable]:
        """All tables, in creation order."""
        with self._lock:
            return list(self._tables.values())

    def update_config(self, changes: Mapping[str, Any]) -> SimConfig:
        """Change live settings; raises ValueError for startup-only or unknown fields."""
        bad = sorted(set(changes) & STARTUP_ONLY_FIELDS)
        if bad:
            raise ValueError(f"cannot change at runtime: {', '.join(bad)}")
        with self._lock:
            merged = {**self._config.model_dump(), **changes}
            self._config = SimConfig.model_validate(merged)
            return self._config

    def inject_fault(
        self,
        *,
        table: str | None = None,
        status: int | None = None,
        count: int = 1,
        delay_s: float | None = None,
    ) -> None:
        """Make the next ``count`` submissions answer ``status`` and/or wait ``delay_s`` first."""
        spec = FaultSpec(table=table, status=status, count=count, delay_s=delay_s)
        with self._lock:
            if spec.table is not None and spec.table not in self._tables:
                raise KeyError(spec.table)
            self._faults.append(_Fault(spec.table, spec.status, spec.count, spec.delay_s))

    def reset(self) -> None:
        """Forget rows, counters, faults and submission counts; cancel pending callbacks."""
        with self._lock:
            self._generation += 1
            self._rows.clear()
            self._faults.clear()
            self._buckets.clear()
            for table in self._tables.values():
                table.submissions = 0
            self._reset_counters()
            tasks = list(self._tasks)
        for task in tasks:
            # The task may live in the server's loop on another thread.
            task.get_loop().call_soon_threadsafe(task.cancel)

    @property
    def pending_callbacks(self) -> int:
        """Callbacks scheduled and not yet finished (sleeping or in flight)."""
        with self._lock:
            return len(self._tasks)

    def rows(self) -> list[dict[str, Any]]:
        """Every accepted row (unless ``record_rows`` is off) with its callback attempts."""
        with self._lock:
            return [row.to_json() for row in self._rows]

    def stats(self) -> dict[str, Any]:
        """Counters of everything the simulator saw and did."""
        with self._lock:
            return {
                "accepted": self._accepted,
                "rejected": dict(sorted(self._rejected.items())),
                "submissions": {t.id: t.submissions for t in self._tables.values()},
                "outcomes": dict(sorted(self._outcomes.items())),
                "callbacks_sent": self._callbacks_sent,
                "callbacks_by_status": dict(sorted(self._callbacks_by_status.items())),
                "callback_errors": self._callback_errors,
                "misconfig_errors": self._misconfig_errors,
                "dropped": self._dropped,
                "late": self._late,
                "duplicates": self._duplicates,
                "no_callback_url": self._no_callback_url,
                "pending_callbacks": len(self._tasks),
            }

    def build_app(self) -> Starlette:
        """The ASGI app: table webhooks plus the ``/_sim`` control API."""

        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            self._ensure_client()
            try:
                yield
            finally:
                await self.aclose()

        routes = [
            Route(WEBHOOK_PATH_PREFIX + "{webhook_id}", self._webhook, methods=["POST"]),
            Route("/_sim/tables", self._create_table, methods=["POST"]),
            Route("/_sim/tables", self._list_tables, methods=["GET"]),
            Route("/_sim/faults", self._create_fault, methods=["POST"]),
            Route("/_sim/faults", self._list_faults, methods=["GET"]),
            Route("/_sim/config", self._set_config, methods=["POST"]),
            Route("/_sim/config", self._get_config, methods=["GET"]),
            Route("/_sim/reset", self._reset, methods=["POST"]),
            Route("/_sim/rows", self._get_rows, methods=["GET"]),
            Route("/_sim/stats", self._get_stats, methods=["GET"]),
        ]
        return Starlette(routes=routes, lifespan=lifespan)

    async def aclose(self) -> None:
        """Cancel pending callbacks and close the HTTP client (run by the app's lifespan)."""
        with self._lock:
            tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._semaphore = None

    # ------------------------------------------------------------------ webhook source

    async def _webhook(self, request: Request) -> Response:
        table = self._by_webhook.get(request.path_params["webhook_id"])
        if table is None:
            return _error(404, "not_found", "No webhook source exists at this URL.")
        if table.auth_token is not None:
            given = request.headers.get(WEBHOOK_AUTH_HEADER, "")
            if not hmac.compare_digest(given.encode(), table.auth_token.encode()):
                return self._refuse(
                    401, "unauthorized", f"Missing or invalid {WEBHOOK_AUTH_HEADER} header."
                )

        fault = self._take_fault(table.id)
        if fault is not None:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            if fault.status is not None:
                phrase = _phrase(fault.status)
                return self._refuse(
                    fault.status, "injected_fault", phrase, self._retry_after(fault.status)
                )

        config = self._config
        with self._lock:
            bucket = self._buckets.get(table.workspace)
            if bucket is None:
                bucket = self._buckets[table.workspace] = TokenBucket(
                    config.burst, time.monotonic()
                )
            allowed = bucket.take(time.monotonic(), config.rate_per_s, config.burst)
        if not allowed:
            return self._refuse(
                429,
                "rate_limited",
                f"Too many records: {config.rate_per_s:g}/s per workspace, burst {config.burst}.",
                self._retry_after(429),
            )

        try:
            raw = await _read_capped(request, config.max_body_bytes)
        except _BodyTooLarge:
            return self._refuse(
                413, "payload_too_large", f"Payload exceeds {config.max_body_bytes} bytes."
            )
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self._refuse(400, "invalid_json", "Body must be a JSON object.")
        if not isinstance(data, dict):
            return self._refuse(400, "invalid_json", "Body must be a JSON object.")

        row = self._accept(table, data)
        if row is None:
            return self._refuse(
                403,
                "submission_limit_reached",
                f"This webhook has reached its submission limit of {table.limit} submissions. "
                "Create a new webhook source to keep sending rows.",
            )
        self._schedule(row)
        return _json({"status": "ok"})

    def _refuse(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        with self._lock:
            self._rejected[str(status)] += 1
        return _error(status, code, message, headers)

    def _retry_after(self, status: int) -> dict[str, str] | None:
        if status == 429 and self._config.send_retry_after:
            return {"Retry-After": "1"}
        return None

    def _take_fault(self, table_id: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.table is None or fault.table == table_id:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _accept(self, table: SimTable, data: dict[str, Any]) -> SimRow | None:
        """Count the submission and decide its fate, or None past the lifetime limit."""
        with self._lock:
            if table.submissions >= table.limit:
                return None
            config = self._config
            table.submissions += 1
            self._accepted += 1
            self._seq += 1
            decision = decide(data, self._seq, config)
            placeholder = None
            if decision.style == "placeholders" and decision.outcome == "not_found":
                placeholder = PLACEHOLDERS[self._placeholder_seq % len(PLACEHOLDERS)]
                self._placeholder_seq += 1
            headers = callback_headers(config)
            misconfig = header_error(headers)
            row = SimRow(
                seq=self._seq,
                table_id=table.id,
                received_at=_now_iso(),
                data=data,
                decision=decision,
                callback_body=callback_body(data, decision, placeholder),
                headers=None if misconfig else headers,
                misconfig_error=misconfig,
            )
            self._outcomes[decision.outcome] += 1
            if config.record_rows:
                self._rows.append(row)
            return row

    # ------------------------------------------------------------------ HTTP API action

    def _ensure_client(self) -> httpx.AsyncClient:
        if self._client is None:
            concurrency = self._config.callback_concurrency
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=concurrency),
                follow_redirects=False,
                trust_env=False,
            )
            self._semaphore = asyncio.Semaphore(concurrency)
        return self._client

    def _schedule(self, row: SimRow) -> None:
        d = row.decision
        url = row.data.get("callback_url")
        with self._lock:
            if d.drop:
                self._dropped += 1
                row.note = "dropped: no callback will be sent"
                return
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                self._no_callback_url += 1
                row.note = "row has no http(s) callback_url"
                return
            self._late += d.late
            self._duplicates += d.duplicate
            task = asyncio.get_running_loop().create_task(
                self._deliver(row, url, self._generation), name=f"clay-sim-callback-{row.seq}"
            )
            self._tasks.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        with self._lock:
            self._tasks.discard(task)

    async def _deliver(self, row: SimRow, url: str, generation: int) -> None:
        await asyncio.sleep(row.decision.delay_s)
        if row.misconfig_error is not None:
            with self._lock:
                if generation == self._generation:
                    self._misconfig_errors += 1
            return
        assert row.headers is not None
        content = json.dumps(row.callback_body, separators=(",", ":")).encode()
        for _ in range(2 if row.decision.duplicate else 1):
            attempt = await self._post(url, content, row.headers)
            with self._lock:
                if generation != self._generation:
                    return
                row.callbacks.append(attempt)
                self._callbacks_sent += 1
                if attempt.status is None:
                    self._callback_errors += 1
                else:
                    self._callbacks_by_status[str(attempt.status)] += 1

    async def _post(self, url: str, content: bytes, headers: dict[str, str]) -> CallbackAttempt:
        client = self._ensure_client()
        assert self._semaphore is not None
        async with self._semaphore:
            try:
                response = await client.post(
                    url, content=content, headers=headers, timeout=self._config.callback_timeout_s
                )
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}".rstrip(": ")
                return CallbackAttempt(at=_now_iso(), status=None, body=None, error=error)
        return CallbackAttempt(
            at=_now_iso(),
            status=response.status_code,
            body=response.text[:RESPONSE_BODY_KEEP],
            error=None,
        )

    # ------------------------------------------------------------------ control API

    def _base_url(self, request: Request) -> str:
        return self.public_url or str(request.base_url).rstrip("/")

    async def _create_table(self, request: Request) -> Response:
        spec = await _parse(request, SimTableSpec)
        if isinstance(spec, Response):
            return spec
        table = self.add_table(
            spec.name, auth_token=spec.auth_token, workspace=spec.workspace, limit=spec.limit
        )
        body = table.to_json(self._base_url(request))
        return _json(body, 201)

    async def _list_tables(self, request: Request) -> Response:
        base = self._base_url(request)
        return _json([t.to_json(base) for t in self.tables()])

    async def _create_fault(self, request: Request) -> Response:
        spec = await _parse(request, FaultSpec)
        if isinstance(spec, Response):
            return spec
        try:
            self.inject_fault(**spec.model_dump())
        except KeyError:
            return _error(404, "unknown_table", f"No table with id {spec.table!r}.")
        return _json(spec.model_dump(), 201)

    async def _list_faults(self, _: Request) -> Response:
        with self._lock:
            return _json([f.to_json() for f in self._faults])

    async def _set_config(self, request: Request) -> Response:
        try:
            changes = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _error(400, "invalid_json", "Body must be a JSON object.")
        if not isinstance(changes, dict):
            return _error(400, "invalid_json", "Body must be a JSON object.")
        try:
            config = self.update_config(changes)
        except ValidationError as exc:
            return _json({"error": "invalid_config", "detail": _errors(exc)}, 400)
        except ValueError as exc:
            return _error(400, "invalid_config", str(exc))
        return _json(config.model_dump(mode="json", exclude={"tables"}))

    async def _get_config(self, _: Request) -> Response:
        return _json(self._config.model_dump(mode="json", exclude={"tables"}))

    async def _reset(self, _: Request) -> Response:
        self.reset()
        return _json({"status": "reset"})

    async def _get_rows(self, _: Request) -> Response:
        return _json(self.rows())

    async def _get_stats(self, _: Request) -> Response:
        return _json(self.stats())


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _errors(exc: ValidationError) -> Any:
    return json.loads(exc.json(include_url=False))


async def _parse(request: Request, model: type[_M]) -> _M | Response:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        return _json({"error": "invalid_request", "detail": _errors(exc)}, 400)
