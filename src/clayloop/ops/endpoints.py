"""Operator endpoints of a workspace: loop status and open alerts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from clayloop.kit.auth import current_workspace
from clayloop.kit.runtime import Runtime
from clayloop.leads.schemas import error_responses
from clayloop.ops.alerts import open_alerts
from clayloop.ops.status import loop_status
from clayloop.workspaces.service import WorkspaceContext

router = APIRouter(prefix="/api/v1", tags=["operations"])
Workspace = Annotated[WorkspaceContext, Depends(current_workspace)]


@router.get("/status", responses=error_responses(401))
async def get_status(request: Request, ws: Workspace) -> dict[str, Any]:
    """Requests by kind, status and reason; leads by enrichment status; rows sent; alerts."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.connect() as conn:
        return await loop_status(conn, ws.id)


@router.get("/alerts", responses=error_responses(401))
async def get_alerts(request: Request, ws: Workspace) -> dict[str, Any]:
    """Open alerts of this workspace."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.connect() as conn:
        return {"items": await open_alerts(conn, ws.id)}
