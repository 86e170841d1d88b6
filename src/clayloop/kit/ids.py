"""Identifiers and secrets."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid


def new_id() -> str:
    """A new random identifier (UUID4, canonical text form)."""
    return str(uuid.uuid4())


_UUID_RE = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def is_uuid(value: str) -> bool:
    """Whether ``value`` is a UUID in canonical text form (ids are only hints until looked up)."""
    return _UUID_RE.fullmatch(value) is not None


def new_api_key() -> str:
    """A new workspace API key; shown once, stored only as a hash."""
    return "cl_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """SHA-256 of an API key (keys are long random strings, so a fast hash is enough)."""
    return hashlib.sha256(key.strip().encode()).hexdigest()


def callback_token(server_key: str, request_id: str) -> str:
    """The callback token issued for a request: HMAC-SHA256(server key, request id), hex."""
    return hmac.new(server_key.encode(), request_id.encode(), hashlib.sha256).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    """Compare two strings without leaking where they differ."""
    return hmac.compare_digest(a.encode(), b.encode())
