"""Workspace settings: the per-tenant policy knobs, with their defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_POSITIVE = ["Interested", "Meeting Requested", "Call Requested", "Information Requested"]


class WorkspaceSettings(BaseModel):
    """Policy settings stored on a workspace (JSON). Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    default_region: str = Field(
        "US", description="ISO 3166 region used to read phone numbers without a country code"
    )
    require_callback_token: bool = Field(
        False, description="Refuse callbacks that do not carry the request's callback_token"
    )
    eligibility: Literal["positive_only", "all_leads"] = Field(
        "positive_only", description="Send only leads with a positive sentiment, or all leads"
    )
    positive_sentiments: list[str] = Field(default_factory=lambda: list(DEFAULT_POSITIVE))
    cooldown_days: float = Field(30, ge=0, description="Do not resend a known miss this soon")
    required_fields: list[str] = Field(
        default_factory=lambda: ["email"], description="Default required row fields per target"
    )
    daily_cap: int | None = Field(None, ge=0, description="Rows per UTC day, all targets")
    daily_cost_cap: float | None = Field(None, ge=0, description="Cost per UTC day, all targets")
    clay_rate: float = Field(10.0, gt=0, description="Rows/s Clay allows this Clay account")
    clay_burst: int = Field(20, ge=1, description="Burst Clay allows this Clay account")

    @field_validator("default_region")
    @classmethod
    def _upper_region(cls, value: str) -> str:
        region = value.strip().upper()
        if len(region) != 2 or not region.isalpha():
            raise ValueError("default_region must be a two-letter ISO 3166 region such as US")
        return region


def load_settings(raw: dict[str, object] | None) -> WorkspaceSettings:
    """Settings from the stored JSON, defaults filled in (stored JSON was validated on write)."""
    return WorkspaceSettings.model_validate(raw or {})
