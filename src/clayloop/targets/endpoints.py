"""The target API: /api/v1/targets (workspace API key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from clayloop.kit.auth import current_workspace
from clayloop.kit.runtime import Runtime
from clayloop.leads.schemas import error_responses
from clayloop.targets.schemas import TargetIn, TargetList, TargetOut
from clayloop.targets.service import add_target, list_targets, set_target_state
from clayloop.workspaces.service import WorkspaceContext

router = APIRouter(prefix="/api/v1/targets", tags=["targets"])
Workspace = Annotated[WorkspaceContext, Depends(current_workspace)]


@router.post("", response_model=TargetOut, status_code=201, responses=error_responses(401, 422))
async def post_target(data: TargetIn, request: Request, ws: Workspace) -> TargetOut:
    """Add a Clay table webhook for one kind (linkedin or phone)."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.begin() as conn:
        return await add_target(conn, ws.id, data)


@router.get("", response_model=TargetList, responses=error_responses(401))
async def get_targets(request: Request, ws: Workspace) -> TargetList:
    """This workspace's targets, with usage, state and last error."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.connect() as conn:
        return TargetList(items=await list_targets(conn, ws.id))


@router.post("/{target_id}/pause", response_model=TargetOut, responses=error_responses(401, 404))
async def pause_target(target_id: str, request: Request, ws: Workspace) -> TargetOut:
    """Stop sending to this target; its leads stay queued with reason target_paused."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.begin() as conn:
        return await set_target_state(conn, ws.id, target_id, paused=True)


@router.post("/{target_id}/resume", response_model=TargetOut, responses=error_responses(401, 404))
async def resume_target(target_id: str, request: Request, ws: Workspace) -> TargetOut:
    """Send to this target again."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.begin() as conn:
        return await set_target_state(conn, ws.id, target_id, paused=False)
