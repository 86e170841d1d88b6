"""Authenticating Clay callbacks.

Clay's HTTP API action cannot sign a request: it sends fixed headers. So the
primary credential is a static secret in a header; senders that can sign may
send HMAC-SHA256 of the raw body instead. Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SECRET_HEADERS = ("x-clay-signature", "x-webhook-signature", "x-clay-secret", "x-webhook-secret")
SIGNATURE_HEADERS = ("x-clay-signature", "x-webhook-signature")


@dataclass(frozen=True)
class Credential:
    """Who a callback authenticated as: a workspace (or None for a server-wide secret), and how."""

    workspace_id: str | None
    method: str


def _presented(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for name in SECRET_HEADERS:
        value = headers.get(name)
        if value:
            found.append((name, value.strip()))
    auth = headers.get("authorization", "")
    scheme, _, token = auth.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        found.append(("bearer", token.strip()))
    return found


def _decode_signature(value: str) -> list[bytes]:
    """Candidate digests a signature header may spell: hex or base64, optional sha256= prefix."""
    raw = value.strip()
    if raw.lower().startswith("sha256="):
        raw = raw[7:]
    candidates: list[bytes] = []
    if len(raw) == 64:
        with contextlib.suppress(ValueError):
            candidates.append(bytes.fromhex(raw))
    if 40 <= len(raw) <= 48:
        for decoder in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                padded = raw + "=" * (-len(raw) % 4)
                digest = decoder(padded.encode())
            except (binascii.Error, ValueError):
                continue
            if len(digest) == 32:
                candidates.append(digest)
    return candidates


def verify_callback(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[tuple[str | None, str]],
) -> Credential | None:
    """The credential a callback carries, checked against ``(workspace_id, secret)`` pairs.

    ``headers`` must have lower-case names. Returns None when nothing matches.
    """
    presented = _presented(headers)
    if not presented or not secrets:
        return None
    signatures = [
        (name, digest)
        for name, value in presented
        if name in SIGNATURE_HEADERS
        for digest in _decode_signature(value)
    ]
    for workspace_id, secret in secrets:
        secret_bytes = secret.encode()
        for name, value in presented:
            if hmac.compare_digest(value.encode(), secret_bytes):
                return Credential(workspace_id, "bearer" if name == "bearer" else f"secret:{name}")
        if signatures:
            expected = hmac.new(secret_bytes, body, hashlib.sha256).digest()
            for name, digest in signatures:
                if hmac.compare_digest(digest, expected):
                    return Credential(workspace_id, f"hmac:{name}")
    return None
