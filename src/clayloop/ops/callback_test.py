"""``clayloop callback-test``: a curl an operator can run to check the loop end to end."""

from __future__ import annotations

import json
import shlex
from typing import Any

import sqlalchemy as sa

from clayloop import models as m
from clayloop.clay.payloads import decide, extract_callback
from clayloop.config import Settings
from clayloop.enrichment.policy import OPEN
from clayloop.enrichment.requests import latest_requests
from clayloop.kit.db import create_engine
from clayloop.kit.errors import ClayloopError
from clayloop.kit.ids import callback_token, is_uuid
from clayloop.kit.runtime import load_token_key
from clayloop.workspaces.schemas import load_settings


async def build_callback_test(
    settings: Settings, lead_id: str, kind: str, value: str, *, show_secret: bool
) -> dict[str, Any]:
    """The curl command, a note on the secret, and the answer to expect."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(
                            m.lead.c.id,
                            m.lead.c.workspace_id,
                            m.workspace.c.settings,
                            m.workspace.c.callback_secrets,
                        )
                        .join(m.workspace, m.workspace.c.id == m.lead.c.workspace_id)
                        .where(m.lead.c.id == lead_id)
                    )
                ).first()
                if is_uuid(lead_id)
                else None
            )
            if row is None:
                raise ClayloopError(404, "unknown_lead", f"no lead with id {lead_id!r}")
            request = (await latest_requests(conn, lead_id)).get(kind)
            if request is None:
                raise ClayloopError(
                    404,
                    "unknown_request",
                    f"lead {lead_id} has no {kind} enrichment request; "
                    "create or update the lead so that one is opened",
                )
        token_key = await load_token_key(engine, settings)
    finally:
        await engine.dispose()
    field = "linkedin_url" if kind == "linkedin" else "phone"
    body = {
        "request_id": request.id,
        "lead_id": lead_id,
        "enrichment_type": kind,
        "callback_token": callback_token(token_key, request.id),
        "success": True,
        field: value,
    }
    ws_settings = load_settings(row.settings)
    decision = decide(extract_callback(body), kind, ws_settings.default_region)  # type: ignore[arg-type]
    applies = request.status in OPEN or (
        request.status != "enriched" and decision.outcome == "enriched"
    )
    expected = {
        "result": "applied" if applies else "duplicate",
        "lead_id": lead_id,
        "kind": kind,
        "status": decision.outcome if applies else request.status,
    }
    secret, note = _secret_header(settings, list(row.callback_secrets or []), show_secret)
    curl = [
        "curl -sS -X POST " + shlex.quote(settings.callback_url),
        "-H 'Content-Type: application/json'",
        f'-H "x-clay-signature: {secret}"',
        "--data " + shlex.quote(json.dumps(body)),
    ]
    if decision.reason:
        expected["note"] = f"the value will be refused as {decision.reason}"
    return {"curl": curl, "expected": expected, "secret_note": note}


def _secret_header(
    settings: Settings, workspace_secrets: list[str], show: bool
) -> tuple[str, str | None]:
    if show:
        chosen = (settings.callback_secrets or workspace_secrets or [""])[0]
        if chosen:
            return chosen.replace('"', '\\"'), None
    if settings.callback_secrets:
        return (
            "${CLAYLOOP_CALLBACK_SECRETS%%,*}",
            "uses the first secret of CLAYLOOP_CALLBACK_SECRETS from your shell "
            "(or pass --show-secret to write it in)",
        )
    if workspace_secrets:
        return (
            "$CALLBACK_SECRET",
            "export CALLBACK_SECRET=<this workspace's callback secret> first "
            "(or pass --show-secret to write it in)",
        )
    return (
        "$CALLBACK_SECRET",
        "WARNING: no callback secret is configured, so the server will answer 401; "
        "set CLAYLOOP_CALLBACK_SECRETS or run 'clayloop workspace add-secret'",
    )
