"""Lead API models: what a caller may send and the lead resource we answer with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class LeadIn(BaseModel):
    """A lead to create or update. Absent or null fields leave stored values unchanged."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str | None = Field(None, max_length=320, examples=["jane@acme.com"])
    alternate_emails: list[str] | None = Field(None, max_length=20)
    first_name: str | None = Field(None, max_length=200)
    last_name: str | None = Field(None, max_length=200)
    company_name: str | None = Field(None, max_length=300)
    company_domain: str | None = Field(None, max_length=253)
    title: str | None = Field(None, max_length=300)
    linkedin_url: str | None = Field(None, max_length=2000)
    phone: str | None = Field(None, max_length=64, examples=["+1 415 555 0132"])
    sentiment: str | None = Field(None, max_length=100, examples=["Interested"])
    ghl_contact_id: str | None = Field(None, max_length=200)
    external_id: str | None = Field(None, max_length=200)
    opted_out: bool | None = None

    @field_validator("*")
    @classmethod
    def _no_nul_character(cls, value: object) -> object:
        # PostgreSQL text cannot hold NUL: refuse it as input instead of failing on insert.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain a NUL character")
        return value


class RequestSummary(BaseModel):
    """The latest enrichment request of one kind for a lead."""

    request_id: str
    status: str
    reason: str | None
    attempts: int
    sent_at: str | None
    completed_at: str | None


class LeadOut(BaseModel):
    """The lead resource (DESIGN.md "Wire contracts")."""

    id: str
    workspace_id: str
    email: str | None
    alternate_emails: list[str]
    first_name: str | None
    last_name: str | None
    company_name: str | None
    company_domain: str | None
    title: str | None
    linkedin_url: str | None
    phone: str | None
    sentiment: str | None
    ghl_contact_id: str | None
    external_id: str | None
    opted_out: bool
    enrichment_status: str
    enrichment: dict[str, RequestSummary | None]
    created_at: str
    updated_at: str


class LeadList(BaseModel):
    """Leads matching a query."""

    items: list[LeadOut]


class ErrorOut(BaseModel):
    """Every error answer: a stable code and a sentence a person can act on."""

    error: str = Field(examples=["unknown_lead"])
    detail: str = Field(examples=["no lead with that id in this workspace"])


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses, all with :class:`ErrorOut`."""
    text = {
        400: "Malformed input",
        401: "Missing or wrong credential",
        404: "Not found in this workspace",
        409: "Conflicts with stored data",
        413: "Body too large",
        422: "Input that cannot be accepted",
        503: "The database did not answer",
    }
    return {c: {"model": ErrorOut, "description": text.get(c, "Error")} for c in codes}
