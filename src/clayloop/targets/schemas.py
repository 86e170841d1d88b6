"""Clay target API models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TargetIn(BaseModel):
    """A Clay table webhook to send one kind of row to."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: Literal["linkedin", "phone"]
    url: str = Field(
        max_length=2000,
        examples=["https://api.clay.com/v3/sources/webhook/pull-in-data-from-a-webhook-…"],
    )
    name: str | None = Field(None, max_length=200)
    auth_token: str | None = Field(
        None, max_length=500, description="Sent as x-clay-webhook-auth; never shown back in full"
    )
    rate: float = Field(10.0, gt=0, le=1000, description="Rows per second for this table")
    burst: int = Field(20, ge=1, le=10000, description="Burst for this table")
    limit: int = Field(
        50000, ge=1, description="Lifetime submissions Clay allows this webhook source"
    )
    daily_cap: int | None = Field(None, ge=0, description="Rows per UTC day for this table")
    cost_per_row: float = Field(0.0, ge=0, description="What one row costs (for budgets)")
    required_fields: list[str] | None = Field(
        None, description="Row fields that must be non-blank (default: the workspace's)"
    )
    group: str | None = Field(
        None,
        max_length=200,
        description="Shared Clay-account rate group (default: one group per workspace)",
    )
    priority: int = Field(0, description="Lower is used first among targets of one kind")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        lowered = value.lower()
        if not (lowered.startswith("https://") or lowered.startswith("http://")):
            raise ValueError("url must be an http(s) URL of a Clay table webhook")
        if any(c.isspace() for c in value):
            raise ValueError("url must not contain whitespace")
        return value

    @field_validator("auth_token")
    @classmethod
    def _trim_token(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("required_fields")
    @classmethod
    def _known_fields(cls, value: list[str] | None) -> list[str] | None:
        from clayloop.enrichment.policy import ROW_FIELDS

        if value is None:
            return None
        unknown = [f for f in value if f not in ROW_FIELDS]
        if unknown:
            raise ValueError(
                f"unknown required field(s) {unknown}; choose from {', '.join(ROW_FIELDS)}"
            )
        return value


class TargetOut(BaseModel):
    """A Clay target as shown to operators (the auth token is only hinted at)."""

    id: str
    workspace_id: str
    kind: str
    name: str | None
    url: str
    auth_token_hint: str | None
    rate: float
    burst: int
    group: str | None
    limit: int
    submissions_used: int
    daily_cap: int | None
    cost_per_row: float
    required_fields: list[str]
    priority: int
    state: str
    paused_reason: str | None
    last_success_at: str | None
    last_error_at: str | None
    last_error: str | None
    created_at: str


class TargetList(BaseModel):
    """The workspace's targets."""

    items: list[TargetOut]
