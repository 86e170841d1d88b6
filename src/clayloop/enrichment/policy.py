"""Which leads are sent to Clay, and why not: pure decisions, no I/O.

Lead-level reasons are decided when a lead is created or changed; target-level
reasons (required fields, no target, paused target, budget) when the
dispatcher claims a request. Every reason is written on the request, so
"why wasn't this lead sent?" always has an answer in the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from clayloop.workspaces.schemas import WorkspaceSettings

KIND_FIELD = {"linkedin": "linkedin_url", "phone": "phone"}
OPEN = frozenset({"queued", "sending", "sent"})

# Reasons recorded on a request that was not sent.
NO_EMAIL = "no_email"
OPTED_OUT = "opted_out"
HAS_VALUE = "has_value"
NOT_POSITIVE = "not_positive"
COOLDOWN = "cooldown"
NO_TARGET = "no_target"
TARGET_PAUSED = "target_paused"
BUDGET_EXHAUSTED = "budget_exhausted"
MISSING_REQUIRED = "missing_required"

ROW_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "full_name",
    "company_name",
    "company_domain",
    "title",
    "linkedin_url",
    "phone",
)


@dataclass(frozen=True)
class Eligibility:
    """Whether a lead should be sent for one kind, and the reason when not."""

    eligible: bool
    reason: str | None = None


def lead_eligibility(
    lead: Mapping[str, Any],
    kind: str,
    settings: WorkspaceSettings,
    *,
    last_not_found_at: datetime | None,
    now: datetime,
) -> Eligibility:
    """Decide whether ``lead`` should be sent to a ``kind`` table (the workspace's policy)."""
    if not lead.get("email"):
        return Eligibility(False, NO_EMAIL)
    if lead.get("opted_out"):
        return Eligibility(False, OPTED_OUT)
    if lead.get(KIND_FIELD[kind]):
        return Eligibility(False, HAS_VALUE)
    if settings.eligibility == "positive_only" and not is_positive(
        lead.get("sentiment"), settings.positive_sentiments
    ):
        return Eligibility(False, NOT_POSITIVE)
    if (
        last_not_found_at is not None
        and settings.cooldown_days > 0
        and now - last_not_found_at < timedelta(days=settings.cooldown_days)
    ):
        return Eligibility(False, COOLDOWN)
    return Eligibility(True)


def is_positive(sentiment: str | None, positive: Iterable[str]) -> bool:
    """Whether a sentiment tag is one of the positive ones (case- and space-insensitive)."""
    if not sentiment:
        return False
    key = " ".join(sentiment.split()).casefold()
    return any(key == " ".join(p.split()).casefold() for p in positive)


def missing_required(row: Mapping[str, Any], required: Iterable[str]) -> str | None:
    """The first required row field that is null or blank, or None when the row is complete."""
    for name in required:
        value = row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return name
    return None


def rollup(has_email: bool, latest_statuses: Iterable[str]) -> str:
    """``lead.enrichment_status`` from the status of the lead's latest request of each kind.

    not_needed: no email (SMS-only), or nothing was ever to be sent (every request
    skipped or cancelled); pending: any open request; enriched: all closed and at
    least one enriched; failed: none enriched, at least one failed; not_found: the rest.
    """
    if not has_email:
        return "not_needed"
    counted = [s for s in latest_statuses if s not in ("skipped", "cancelled")]
    if not counted:
        return "not_needed"
    if any(s in OPEN for s in counted):
        return "pending"
    if "enriched" in counted:
        return "enriched"
    if "failed" in counted:
        return "failed"
    return "not_found"
