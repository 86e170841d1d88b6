"""API-key authentication for the workspace API (``Authorization: Bearer <api key>``)."""

from __future__ import annotations

from fastapi import Request

from clayloop.kit.errors import ClayloopError
from clayloop.kit.runtime import Runtime
from clayloop.workspaces.service import WorkspaceContext, authenticate_api_key


async def current_workspace(request: Request) -> WorkspaceContext:
    """FastAPI dependency: the workspace whose API key the request carries, or a 401."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ClayloopError(
            401, "unauthorized", "send the workspace API key as 'Authorization: Bearer <key>'"
        )
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.connect() as conn:
        ws = await authenticate_api_key(conn, key.strip())
    if ws is None:
        raise ClayloopError(401, "unauthorized", "unknown or revoked API key")
    return ws
