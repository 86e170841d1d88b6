"""Leads: normalize, match, create or update, and open enrichment requests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from clayloop import models as m
from clayloop.enrichment.policy import OPEN
from clayloop.enrichment.requests import evaluate_lead, latest_requests
from clayloop.kit.clock import isoformat, utcnow
from clayloop.kit.errors import ClayloopError
from clayloop.kit.ids import is_uuid, new_id
from clayloop.kit.redact import mask_value
from clayloop.leads.history import add_lead_event
from clayloop.leads.normalize import (
    InvalidValue,
    linkedin_match_key,
    normalize_email,
    normalize_linkedin_url,
    normalize_phone,
)
from clayloop.leads.schemas import LeadIn, LeadOut, RequestSummary
from clayloop.workspaces.service import WorkspaceContext

PLAIN_FIELDS = ("first_name", "last_name", "company_name", "company_domain", "title", "sentiment")
IDENTITY_FIELDS = ("ghl_contact_id", "external_id")
TRACKED_FIELDS = (
    "email",
    "linkedin_url",
    "phone",
    *PLAIN_FIELDS,
    *IDENTITY_FIELDS,
    "opted_out",
)


def normalized_input(data: LeadIn, region: str) -> dict[str, Any]:
    """The given fields of ``data``, normalized; raises a 422 naming the bad field."""
    out: dict[str, Any] = {}
    try:
        if data.email:
            out["email"] = normalize_email(data.email)
        if data.alternate_emails:
            out["alternate_emails"] = sorted(
                {normalize_email(e) for e in data.alternate_emails if e and e.strip()}
            )
        if data.linkedin_url:
            url = normalize_linkedin_url(data.linkedin_url)
            out["linkedin_url"] = url
            out["linkedin_key"] = linkedin_match_key(url)
        if data.phone:
            out["phone"] = normalize_phone(data.phone, region)
    except InvalidValue as exc:
        raise ClayloopError(422, exc.code, exc.detail) from exc
    for name in (*PLAIN_FIELDS, *IDENTITY_FIELDS):
        value = getattr(data, name)
        if value:
            out[name] = value
    if data.company_domain:
        out["company_domain"] = data.company_domain.lower().removeprefix("www.")
    if data.opted_out is not None:
        out["opted_out"] = data.opted_out
    return out


async def find_match(
    conn: AsyncConnection, workspace_id: str, fields: Mapping[str, Any]
) -> Any | None:
    """The existing lead these fields identify, trying identifiers in priority order.

    Order: ghl_contact_id, external_id, LinkedIn URL, email (case-insensitive; stored
    lowercased), alternate emails, phone.
    """
    lead = m.lead
    probes: list[Any] = []
    if fields.get("ghl_contact_id"):
        probes.append(lead.c.ghl_contact_id == fields["ghl_contact_id"])
    if fields.get("external_id"):
        probes.append(lead.c.external_id == fields["external_id"])
    if fields.get("linkedin_key"):
        probes.append(lead.c.linkedin_key == fields["linkedin_key"])
    emails = [e for e in [fields.get("email"), *fields.get("alternate_emails", [])] if e]
    if fields.get("email"):
        probes.append(lead.c.email == fields["email"])
    if emails:
        alt = sa.select(m.lead_alternate_email.c.lead_id).where(
            m.lead_alternate_email.c.workspace_id == workspace_id,
            m.lead_alternate_email.c.email.in_(emails),
        )
        probes.append(sa.or_(lead.c.id.in_(alt), lead.c.email.in_(emails)))
    if fields.get("phone"):
        probes.append(lead.c.phone == fields["phone"])
    for probe in probes:
        row = (
            await conn.execute(
                sa.select(lead)
                .where(lead.c.workspace_id == workspace_id, probe)
                .order_by(lead.c.created_at)
                .limit(1)
            )
        ).first()
        if row is not None:
            return row
    return None


async def _lock_workspace_leads(conn: AsyncConnection, workspace_id: str) -> None:
    # Matching then inserting must not race with another upsert of the same person;
    # SQLite serializes writers already (BEGIN IMMEDIATE).
    if conn.dialect.name == "postgresql":
        await conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": "lead:" + workspace_id}
        )


async def upsert_lead(
    conn: AsyncConnection, ws: WorkspaceContext, data: LeadIn, *, source: str = "api"
) -> tuple[str, bool]:
    """Create or update a lead; returns (lead id, created). Runs in the caller's transaction."""
    fields = normalized_input(data, ws.settings.default_region)
    await _lock_workspace_leads(conn, ws.id)
    existing = await find_match(conn, ws.id, fields)
    now = utcnow()
    if existing is None:
        lead_id = new_id()
        values = {
            "id": lead_id,
            "workspace_id": ws.id,
            "alternate_emails": fields.get("alternate_emails", []),
            "opted_out": False,
            "enrichment_status": "pending",
            "created_at": now,
            "updated_at": now,
        } | {k: v for k, v in fields.items() if k != "alternate_emails"}
        await conn.execute(sa.insert(m.lead).values(**values))
        await _store_alternates(conn, ws.id, lead_id, values["alternate_emails"])
        await add_lead_event(
            conn, lead_id=lead_id, workspace_id=ws.id, now=now, event="created", source=source
        )
        created = True
    else:
        lead_id = existing.id
        changes = _changes(existing, fields)
        if changes:
            changes["updated_at"] = now
            await conn.execute(sa.update(m.lead).where(m.lead.c.id == lead_id).values(**changes))
            if "alternate_emails" in changes:
                await _store_alternates(conn, ws.id, lead_id, changes["alternate_emails"])
            for name in TRACKED_FIELDS:
                if name in changes:
                    await add_lead_event(
                        conn,
                        lead_id=lead_id,
                        workspace_id=ws.id,
                        now=now,
                        event="field_set",
                        source=source,
                        field=name,
                        old=mask_value(name, _text(getattr(existing, name))),
                        new=mask_value(name, _text(changes[name])),
                    )
        created = False
    row = (await conn.execute(sa.select(m.lead).where(m.lead.c.id == lead_id))).one()
    await evaluate_lead(conn, dict(row._mapping), ws.settings, now=now, source=source)
    return lead_id, created


def _changes(existing: Any, fields: Mapping[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in IDENTITY_FIELDS:
        new = fields.get(name)
        old = getattr(existing, name)
        if new and old and new != old:
            raise ClayloopError(
                409,
                "identity_conflict",
                f"the matched lead {existing.id} already has a different {name}; "
                "update that lead by its own identifiers",
            )
        if new and not old:
            changes[name] = new
    for name, value in fields.items():
        if name in IDENTITY_FIELDS or name == "alternate_emails":
            continue
        if getattr(existing, name) != value:
            changes[name] = value
    alternates = set(existing.alternate_emails or []) | set(fields.get("alternate_emails", []))
    # An email replaced by another stays known as an alternate, so old data still matches.
    if "email" in changes and existing.email:
        alternates.add(existing.email)
    alternates.discard(changes.get("email", existing.email))
    if alternates != set(existing.alternate_emails or []):
        changes["alternate_emails"] = sorted(alternates)
    return changes


async def _store_alternates(
    conn: AsyncConnection, workspace_id: str, lead_id: str, emails: list[str]
) -> None:
    await conn.execute(
        sa.delete(m.lead_alternate_email).where(m.lead_alternate_email.c.lead_id == lead_id)
    )
    if emails:
        await conn.execute(
            sa.insert(m.lead_alternate_email),
            [{"lead_id": lead_id, "email": e, "workspace_id": workspace_id} for e in emails],
        )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


async def lead_resource(conn: AsyncConnection, workspace_id: str, lead_id: str) -> LeadOut:
    """The lead resource of one lead of this workspace, or a 404."""
    if not is_uuid(lead_id):
        raise ClayloopError(404, "unknown_lead", "no lead with that id in this workspace")
    row = (
        await conn.execute(
            sa.select(m.lead).where(m.lead.c.id == lead_id, m.lead.c.workspace_id == workspace_id)
        )
    ).first()
    if row is None:
        raise ClayloopError(404, "unknown_lead", "no lead with that id in this workspace")
    return to_resource(row, await latest_requests(conn, lead_id))


async def leads_by_email(conn: AsyncConnection, workspace_id: str, email: str) -> list[LeadOut]:
    """Leads of this workspace whose email or alternate email is ``email``."""
    try:
        clean = normalize_email(email)
    except InvalidValue as exc:
        raise ClayloopError(422, exc.code, exc.detail) from exc
    alt = sa.select(m.lead_alternate_email.c.lead_id).where(
        m.lead_alternate_email.c.workspace_id == workspace_id,
        m.lead_alternate_email.c.email == clean,
    )
    rows = (
        await conn.execute(
            sa.select(m.lead)
            .where(
                m.lead.c.workspace_id == workspace_id,
                sa.or_(m.lead.c.email == clean, m.lead.c.id.in_(alt)),
            )
            .order_by(m.lead.c.created_at)
            .limit(100)
        )
    ).all()
    # The lead whose primary email it is comes before leads that only list it as alternate.
    ordered = sorted(rows, key=lambda r: r.email != clean)
    return [to_resource(r, await latest_requests(conn, r.id)) for r in ordered]


def to_resource(row: Any, latest: Mapping[str, Any]) -> LeadOut:
    """Build the lead resource from a lead row and its latest request of each kind."""
    enrichment: dict[str, RequestSummary | None] = {}
    for kind in m.KINDS:
        req = latest.get(kind)
        enrichment[kind] = (
            None
            if req is None
            else RequestSummary(
                request_id=req.id,
                status=req.status,
                reason=req.reason,
                attempts=req.attempts,
                sent_at=isoformat(req.sent_at),
                completed_at=isoformat(req.completed_at) if req.status not in OPEN else None,
            )
        )
    return LeadOut(
        id=row.id,
        workspace_id=row.workspace_id,
        email=row.email,
        alternate_emails=list(row.alternate_emails or []),
        first_name=row.first_name,
        last_name=row.last_name,
        company_name=row.company_name,
        company_domain=row.company_domain,
        title=row.title,
        linkedin_url=row.linkedin_url,
        phone=row.phone,
        sentiment=row.sentiment,
        ghl_contact_id=row.ghl_contact_id,
        external_id=row.external_id,
        opted_out=bool(row.opted_out),
        enrichment_status=row.enrichment_status,
        enrichment=enrichment,
        created_at=isoformat(row.created_at) or "",
        updated_at=isoformat(row.updated_at) or "",
    )
