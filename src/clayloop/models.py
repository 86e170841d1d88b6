"""The data model (DESIGN.md "Domain model"), as SQLAlchemy tables.

Queries are written with SQLAlchemy Core against these tables; the ORM classes
exist to declare the schema once for both databases and for Alembic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from clayloop.kit.clock import as_utc

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

OPEN_STATUSES = ("queued", "sending", "sent")
TERMINAL_STATUSES = ("enriched", "not_found", "failed", "skipped", "cancelled")
KINDS = ("linkedin", "phone")

# SQLite and PostgreSQL both accept this literal predicate for the partial index.
OPEN_PREDICATE = "status IN ('queued', 'sending', 'sent')"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored with its zone on PostgreSQL and read back aware on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        return as_utc(value)


class Base(DeclarativeBase):
    """Declarative base with a stable constraint naming scheme."""

    metadata = MetaData(naming_convention=NAMING)


class Workspace(Base):
    """A tenant: its leads, targets, keys, callback secrets and policy settings."""

    __tablename__ = "workspace"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    callback_secrets: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    """A workspace API key, stored as a SHA-256 hash."""

    __tablename__ = "api_key"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Lead(Base):
    """A person we may enrich; identity fields are stored normalized."""

    __tablename__ = "lead"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    ghl_contact_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    alternate_emails: Mapped[list[str]] = mapped_column(JSON, default=list)
    linkedin_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    linkedin_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    first_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    company_name: Mapped[str | None] = mapped_column(String(300), nullable=True)
    company_domain: Mapped[str | None] = mapped_column(String(253), nullable=True)
    title: Mapped[str | None] = mapped_column(String(300), nullable=True)
    sentiment: Mapped[str | None] = mapped_column(String(100), nullable=True)
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    enrichment_status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_lead_ws_ghl", "workspace_id", "ghl_contact_id"),
        Index("ix_lead_ws_external", "workspace_id", "external_id"),
        Index("ix_lead_ws_linkedin", "workspace_id", "linkedin_key"),
        Index("ix_lead_ws_email", "workspace_id", "email"),
        Index("ix_lead_ws_phone", "workspace_id", "phone"),
        Index("ix_lead_ws_status", "workspace_id", "enrichment_status"),
    )


class LeadAlternateEmail(Base):
    """An alternate email of a lead, indexed for matching."""

    __tablename__ = "lead_alternate_email"
    lead_id: Mapped[str] = mapped_column(
        ForeignKey("lead.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[str] = mapped_column(String(254), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(36))

    __table_args__ = (Index("ix_alt_email_ws_email", "workspace_id", "email"),)


class ClayTarget(Base):
    """One Clay table webhook that rows of one kind are sent to."""

    __tablename__ = "clay_target"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    url: Mapped[str] = mapped_column(Text)
    auth_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    rate: Mapped[float] = mapped_column(Float, default=10.0)
    burst: Mapped[int] = mapped_column(Integer, default=20)
    rate_group: Mapped[str | None] = mapped_column(String(200), nullable=True)
    submission_limit: Mapped[int] = mapped_column(Integer, default=50000)
    submissions_used: Mapped[int] = mapped_column(Integer, default=0)
    daily_cap: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cost_per_row: Mapped[float] = mapped_column(Float, default=0.0)
    required_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="active")
    paused_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_target_ws_kind", "workspace_id", "kind", "state"),)


class EnrichmentRequest(Base):
    """One enrichment cycle of one kind for one lead: the ledger and the outbox."""

    __tablename__ = "enrichment_request"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    lead_id: Mapped[str] = mapped_column(ForeignKey("lead.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    send_count: Mapped[int] = mapped_column(Integer, default=0)
    timeout_resends: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    target_id: Mapped[str | None] = mapped_column(
        ForeignKey("clay_target.id", ondelete="SET NULL"), nullable=True
    )
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    result_value: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        # At most one open request per (lead, kind): the database enforces it.
        Index(
            "uq_request_open_lead_kind",
            "lead_id",
            "kind",
            unique=True,
            sqlite_where=text(OPEN_PREDICATE),
            postgresql_where=text(OPEN_PREDICATE),
        ),
        Index("ix_request_lead_kind", "lead_id", "kind", "created_at"),
        Index("ix_request_due", "status", "next_attempt_at"),
        Index("ix_request_ws_status", "workspace_id", "status", "kind"),
    )


class CallbackEvent(Base):
    """Journal of every request to the callback endpoint (retention-limited)."""

    __tablename__ = "callback_event"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    workspace_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    lead_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    auth_method: Mapped[str | None] = mapped_column(String(32), nullable=True)
    outcome: Mapped[str] = mapped_column(String(32))
    http_status: Mapped[int] = mapped_column(Integer)
    body_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    body_redacted: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (
        Index("ix_callback_event_received", "received_at"),
        Index("ix_callback_event_request", "request_id"),
    )


class LeadEvent(Base):
    """History of what changed on a lead, from where (values masked)."""

    __tablename__ = "lead_event"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    lead_id: Mapped[str] = mapped_column(ForeignKey("lead.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    event: Mapped[str] = mapped_column(String(32))
    field: Mapped[str | None] = mapped_column(String(64), nullable=True)
    old_value: Mapped[str | None] = mapped_column(Text, nullable=True)
    new_value: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_lead_event_lead", "lead_id", "id"),)


class RateBucket(Base):
    """A token bucket kept in the database so it holds across every worker."""

    __tablename__ = "rate_bucket"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0)


class UsageDaily(Base):
    """Rows sent and cost per day, per target and per workspace (budgets)."""

    __tablename__ = "usage_daily"
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    extra_sends: Mapped[int] = mapped_column(Integer, default=0)


class Alert(Base):
    """An alert-worthy condition, open until resolved."""

    __tablename__ = "alert"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    workspace_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_alert_open", "code", "target_id", "resolved_at"),)


class AppState(Base):
    """Small key/value facts the service keeps for itself (e.g. its generated token key)."""

    __tablename__ = "app_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


workspace = cast(Table, Workspace.__table__)
api_key = cast(Table, ApiKey.__table__)
lead = cast(Table, Lead.__table__)
lead_alternate_email = cast(Table, LeadAlternateEmail.__table__)
clay_target = cast(Table, ClayTarget.__table__)
enrichment_request = cast(Table, EnrichmentRequest.__table__)
callback_event = cast(Table, CallbackEvent.__table__)
lead_event = cast(Table, LeadEvent.__table__)
rate_bucket = cast(Table, RateBucket.__table__)
usage_daily = cast(Table, UsageDaily.__table__)
alert = cast(Table, Alert.__table__)
app_state = cast(Table, AppState.__table__)
