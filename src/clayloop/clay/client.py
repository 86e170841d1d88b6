"""POSTing rows into Clay table webhooks, and what Clay's answer means for us."""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx

AUTH_HEADER = "x-clay-webhook-auth"

Verdict = Literal["sent", "rate_limited", "retry", "rejected", "target_broken"]
TARGET_BROKEN_STATUSES = frozenset({401, 403, 404, 410})
REJECTED_STATUSES = frozenset({400, 413, 422})


@dataclass(frozen=True)
class SendResult:
    """Clay's answer to one row, classified.

    sent: 2xx. rate_limited: 429 (wait ``retry_after``; the lead is not penalized).
    retry: 5xx, timeout, connection error. rejected: that lead's row was refused.
    target_broken: the webhook itself is unusable (bad token, gone, limit reached).
    """

    verdict: Verdict
    status: int | None
    message: str | None
    retry_after: float | None = None
    maybe_delivered: bool = False


def _message(response: httpx.Response) -> str:
    text = response.text[:500]
    try:
        body: Any = json.loads(text)
    except ValueError:
        return text.strip() or response.reason_phrase
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:300]
    return text.strip()[:300]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    raw = value.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify(response: httpx.Response) -> SendResult:
    """What a Clay webhook answer means for the row and the target."""
    status = response.status_code
    if 200 <= status < 300:
        return SendResult("sent", status, None)
    message = _message(response)
    if status == 429:
        return SendResult(
            "rate_limited", status, message, parse_retry_after(response.headers.get("retry-after"))
        )
    if status in TARGET_BROKEN_STATUSES:
        return SendResult("target_broken", status, message)
    if status in REJECTED_STATUSES or 400 <= status < 500:
        return SendResult("rejected", status, message)
    return SendResult("retry", status, message)


async def post_row(
    http: httpx.AsyncClient, url: str, auth_token: str | None, row: dict[str, Any]
) -> SendResult:
    """POST one row to a table webhook and classify the answer (never raises for I/O)."""
    headers = {"content-type": "application/json"}
    if auth_token:
        headers[AUTH_HEADER] = auth_token
    try:
        response = await http.post(url, content=json.dumps(row), headers=headers)
    except httpx.TimeoutException as exc:
        # A timeout after the request went out may still have created the row in Clay.
        return SendResult("retry", None, f"timeout ({type(exc).__name__})", maybe_delivered=True)
    except httpx.HTTPError as exc:
        return SendResult("retry", None, f"connection error ({type(exc).__name__})")
    return classify(response)
