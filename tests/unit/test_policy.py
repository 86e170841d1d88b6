"""The pure decisions: eligibility, required fields, the status rollup, buckets, backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clayloop.clay.client import classify, parse_retry_after
from clayloop.config import Settings
from clayloop.enrichment.dispatcher import Bucket, backoff_seconds, next_midnight
from clayloop.enrichment.policy import is_positive, lead_eligibility, missing_required, rollup
from clayloop.workspaces.schemas import WorkspaceSettings

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POSITIVE = WorkspaceSettings()
ALL = WorkspaceSettings(eligibility="all_leads")


def lead(**fields: object) -> dict[str, object]:
    return {"email": "a@b.com", "sentiment": "Interested", "opted_out": False} | fields


@pytest.mark.parametrize(
    ("fields", "kind", "reason"),
    [
        ({"email": None}, "phone", "no_email"),
        ({"opted_out": True}, "phone", "opted_out"),
        ({"phone": "+14155550132"}, "phone", "has_value"),
        ({"linkedin_url": "https://www.linkedin.com/in/a"}, "linkedin", "has_value"),
        ({"sentiment": "Not Interested"}, "phone", "not_positive"),
        ({"sentiment": None}, "linkedin", "not_positive"),
    ],
)
def test_a_lead_that_is_not_sent_gets_the_reason(fields: dict, kind: str, reason: str) -> None:
    verdict = lead_eligibility(lead(**fields), kind, POSITIVE, last_not_found_at=None, now=NOW)
    assert (verdict.eligible, verdict.reason) == (False, reason)


def test_a_positive_lead_missing_the_value_is_eligible() -> None:
    assert lead_eligibility(lead(), "phone", POSITIVE, last_not_found_at=None, now=NOW).eligible


def test_all_leads_policy_ignores_sentiment() -> None:
    verdict = lead_eligibility(
        lead(sentiment="Not Interested"), "phone", ALL, last_not_found_at=None, now=NOW
    )
    assert verdict.eligible


def test_a_known_miss_is_not_paid_for_twice_within_the_cooldown() -> None:
    recent = NOW - timedelta(days=29)
    old = NOW - timedelta(days=31)
    assert (
        lead_eligibility(lead(), "phone", POSITIVE, last_not_found_at=recent, now=NOW).reason
        == "cooldown"
    )
    assert lead_eligibility(lead(), "phone", POSITIVE, last_not_found_at=old, now=NOW).eligible


def test_sentiment_matching_ignores_case_and_spacing() -> None:
    assert is_positive("  meeting   REQUESTED ", POSITIVE.positive_sentiments)
    assert not is_positive("Interested?", POSITIVE.positive_sentiments)


def test_required_fields_must_be_non_blank() -> None:
    row = {"email": "a@b.com", "first_name": "  ", "last_name": None}
    assert missing_required(row, ["email", "first_name"]) == "first_name"
    assert missing_required(row, ["last_name"]) == "last_name"
    assert missing_required(row, ["email"]) is None


@pytest.mark.parametrize(
    ("has_email", "statuses", "expected"),
    [
        (False, ["queued"], "not_needed"),
        (True, [], "not_needed"),
        (True, ["skipped", "skipped"], "not_needed"),
        (True, ["queued", "enriched"], "pending"),
        (True, ["sent", "failed"], "pending"),
        (True, ["enriched", "not_found"], "enriched"),
        (True, ["failed", "not_found"], "failed"),
        (True, ["not_found", "not_found"], "not_found"),
        (True, ["not_found", "skipped"], "not_found"),
        (True, ["enriched", "failed"], "enriched"),
    ],
)
def test_rollup(has_email: bool, statuses: list[str], expected: str) -> None:
    assert rollup(has_email, statuses) == expected


STATUSES = st.sampled_from(
    ["queued", "sending", "sent", "enriched", "not_found", "failed", "skipped", "cancelled"]
)


@given(st.booleans(), st.lists(STATUSES, max_size=4))
def test_rollup_is_total_and_order_free(has_email: bool, statuses: list[str]) -> None:
    result = rollup(has_email, statuses)
    assert result in {"not_needed", "pending", "enriched", "failed", "not_found"}
    assert rollup(has_email, list(reversed(statuses))) == result


def test_a_bucket_refills_at_its_rate_and_never_above_its_burst() -> None:
    bucket = Bucket("k", tokens=0.0, updated_at=100.0, blocked_until=0.0, rate=10.0, burst=19.0)
    bucket.refill(100.35)
    assert bucket.available(100.35) == 3
    bucket.refill(200.0)
    assert bucket.tokens == 19.0
    blocked = Bucket("k", tokens=5.0, updated_at=0.0, blocked_until=50.0, rate=1.0, burst=5.0)
    assert blocked.available(10.0) == 0
    assert blocked.wait(10.0) == 40.0


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    settings = Settings(_env_file=None, backoff_base_seconds=2, backoff_max_seconds=60)  # type: ignore[call-arg]
    for attempts, base in ((1, 2), (2, 4), (3, 8), (10, 60)):
        for _ in range(20):
            assert 0.5 * base <= backoff_seconds(attempts, settings) <= 1.5 * base


def test_budgets_reset_at_the_next_utc_midnight() -> None:
    assert next_midnight(NOW) == datetime(2026, 11, 24, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "sent"),
        (202, "sent"),
        (429, "rate_limited"),
        (500, "retry"),
        (503, "retry"),
        (400, "rejected"),
        (413, "rejected"),
        (401, "target_broken"),
        (403, "target_broken"),
        (404, "target_broken"),
        (410, "target_broken"),
    ],
)
def test_clay_answers_are_classified(status: int, verdict: str) -> None:
    response = httpx.Response(status, json={"message": "m"}, headers={"retry-after": "3"})
    result = classify(response)
    assert result.verdict == verdict
    if verdict == "rate_limited":
        assert result.retry_after == 3.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
