"""The workspace API: read and change the caller's workspace settings and callback secrets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel

from clayloop.kit.auth import current_workspace
from clayloop.kit.runtime import Runtime
from clayloop.leads.schemas import error_responses
from clayloop.workspaces.schemas import WorkspaceSettings
from clayloop.workspaces.service import WorkspaceContext, add_callback_secret, update_settings

router = APIRouter(prefix="/api/v1/workspace", tags=["workspace"])
Workspace = Annotated[WorkspaceContext, Depends(current_workspace)]


class WorkspaceOut(BaseModel):
    """The caller's workspace."""

    id: str
    name: str
    settings: WorkspaceSettings


class SecretOut(BaseModel):
    """A callback secret, shown once."""

    workspace_id: str
    callback_secret: str


@router.get("", response_model=WorkspaceOut, responses=error_responses(401))
async def get_workspace(ws: Workspace) -> WorkspaceOut:
    """The workspace this API key belongs to, with its effective settings."""
    return WorkspaceOut(id=ws.id, name=ws.name, settings=ws.settings)


@router.patch("/settings", response_model=WorkspaceOut, responses=error_responses(401, 422))
async def patch_settings(
    request: Request, ws: Workspace, changes: Annotated[dict[str, Any], Body()]
) -> WorkspaceOut:
    """Change some settings; the rest keep their values. Unknown keys are refused."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.begin() as conn:
        new = await update_settings(conn, ws.id, changes)
    return WorkspaceOut(id=ws.id, name=ws.name, settings=new)


@router.post(
    "/callback-secrets",
    response_model=SecretOut,
    status_code=201,
    responses=error_responses(401),
)
async def post_callback_secret(request: Request, ws: Workspace) -> SecretOut:
    """Generate a new callback secret for this workspace (older ones keep working)."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.begin() as conn:
        secret, _ = await add_callback_secret(conn, ws.id)
    await runtime.secrets.refresh()
    return SecretOut(workspace_id=ws.id, callback_secret=secret)
