"""The outgoing row: one JSON object per POST to a Clay table webhook (DESIGN.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def full_name(first: str | None, last: str | None) -> str | None:
    """``first last`` from whichever parts exist."""
    joined = " ".join(p.strip() for p in (first, last) if p and p.strip())
    return joined or None


def build_row(
    *,
    request_id: str,
    lead: Mapping[str, Any],
    kind: str,
    callback_url: str,
    callback_token: str,
) -> dict[str, Any]:
    """The row for one request: ids, callback coordinates and the lead's fields."""
    return {
        "request_id": request_id,
        "lead_id": lead["id"],
        "workspace_id": lead["workspace_id"],
        "enrichment_type": kind,
        "callback_url": callback_url,
        "callback_token": callback_token,
        "email": lead.get("email"),
        "first_name": lead.get("first_name"),
        "last_name": lead.get("last_name"),
        "full_name": full_name(lead.get("first_name"), lead.get("last_name")),
        "company_name": lead.get("company_name"),
        "company_domain": lead.get("company_domain"),
        "title": lead.get("title"),
        "linkedin_url": lead.get("linkedin_url"),
        "phone": lead.get("phone"),
    }
