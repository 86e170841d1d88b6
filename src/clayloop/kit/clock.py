"""Time helpers: every timestamp clayloop stores is an aware UTC datetime."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Make a datetime read back from the database aware (SQLite drops the zone)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def isoformat(value: datetime | None) -> str | None:
    """ISO-8601 with a ``Z`` suffix, or None."""
    aware = as_utc(value)
    if aware is None:
        return None
    return aware.isoformat().replace("+00:00", "Z")
