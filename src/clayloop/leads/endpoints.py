"""The lead API: create or update a lead, read it back with its enrichment state."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from clayloop.kit.auth import current_workspace
from clayloop.kit.errors import ClayloopError
from clayloop.kit.runtime import Runtime
from clayloop.leads.schemas import LeadIn, LeadOut, error_responses
from clayloop.leads.service import lead_resource, leads_by_email, upsert_lead
from clayloop.workspaces.service import WorkspaceContext

router = APIRouter(prefix="/api/v1/leads", tags=["leads"])
Workspace = Annotated[WorkspaceContext, Depends(current_workspace)]


@router.post(
    "",
    response_model=LeadOut,
    status_code=201,
    responses={
        200: {"model": LeadOut, "description": "An existing lead was updated"},
        **error_responses(400, 401, 409, 422),
    },
)
async def post_lead(data: LeadIn, request: Request, response: Response, ws: Workspace) -> LeadOut:
    """Create a lead, or update the lead it matches.

    Matching, within the workspace, in this order: ghl_contact_id, external_id,
    LinkedIn URL, email (case-insensitive), alternate emails, phone. Answers 201
    when created, 200 when updated. Enrichment requests are opened for each kind
    the lead lacks (or skipped with a recorded reason).
    """
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.begin() as conn:
        lead_id, created = await upsert_lead(conn, ws, data)
        resource = await lead_resource(conn, ws.id, lead_id)
    response.status_code = 201 if created else 200
    return resource


@router.get("/{lead_id}", response_model=LeadOut, responses=error_responses(401, 404))
async def get_lead(lead_id: str, request: Request, ws: Workspace) -> LeadOut:
    """One lead of this workspace with its latest request of each kind."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.connect() as conn:
        return await lead_resource(conn, ws.id, lead_id)


@router.get("", response_model=LeadOut, responses=error_responses(401, 404, 422))
async def find_lead(
    request: Request,
    ws: Workspace,
    email: Annotated[str | None, Query(description="Email or alternate email")] = None,
) -> LeadOut:
    """The lead of this workspace with this email (or alternate email), or a 404."""
    if not email:
        raise ClayloopError(422, "missing_query", "give ?email=… to find a lead by email")
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.connect() as conn:
        found = await leads_by_email(conn, ws.id, email)
    if not found:
        raise ClayloopError(404, "unknown_lead", "no lead with that email in this workspace")
    # The lead whose primary email it is comes first.
    return found[0]
