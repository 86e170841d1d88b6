"""The two baselines of ``bench/callback.py``, each served like ``clayloop serve`` serves clayloop.

``python bench/_callback_apps.py echo --port 8101`` serves a minimal Starlette app that
reads the JSON body of ``POST /api/webhooks/clay`` and answers it back: the HTTP ceiling.

``python bench/_callback_apps.py raw --port 8102`` (``BENCH_DSN`` in the environment) serves
a minimal Starlette app with an asyncpg pool (``BENCH_POOL`` connections, default 32) that
does, per request, the essential database work of a callback in one transaction: UPDATE one
enrichment request by id and INSERT one callback_event journal row. It answers 200
``{"result":"applied",...}`` when the UPDATE hit a row, 404 otherwise.

Both run under ``uvicorn.run(app, host, port, log_level="warning", access_log=False)``, the
exact call ``clayloop serve`` makes (uvicorn picks uvloop and httptools when installed).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

PATH = "/api/webhooks/clay"

UPDATE = """
UPDATE enrichment_request
   SET status = 'enriched', result_value = $2, completed_at = $3, updated_at = $3,
       lease_until = NULL, lease_owner = NULL
 WHERE id = $1
"""

JOURNAL = """
INSERT INTO callback_event
    (received_at, workspace_id, request_id, lead_id, kind, auth_method, outcome,
     http_status, body_sha256, body_redacted, error, duration_ms)
VALUES ($1, NULL, $2, $3, $4, 'secret:x-clay-signature', 'applied', 200, NULL, $5, NULL, NULL)
"""


async def ping(_request: Request) -> PlainTextResponse:
    """Readiness probe."""
    return PlainTextResponse("ok")


async def echo(request: Request) -> JSONResponse:
    """Read the JSON body and answer it back."""
    return JSONResponse(json.loads(await request.body()))


def echo_app() -> Starlette:
    """The HTTP ceiling: JSON in, the same JSON out."""
    return Starlette(routes=[Route(PATH, echo, methods=["POST"]), Route("/ping", ping)])


def raw_app(dsn: str, pool_size: int) -> Starlette:
    """The essential database work of a callback, through asyncpg and nothing else."""
    state: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state["pool"] = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
        try:
            yield
        finally:
            await state["pool"].close()

    async def callback(request: Request) -> JSONResponse:
        body = await request.body()
        obj = json.loads(body)
        now = datetime.now(UTC)
        async with state["pool"].acquire() as conn, conn.transaction():
            updated = await conn.execute(UPDATE, obj["request_id"], obj["phone"], now)
            await conn.execute(
                JOURNAL,
                now,
                obj["request_id"],
                obj["lead_id"],
                obj["enrichment_type"],
                body.decode(),
            )
        if updated != "UPDATE 1":
            return JSONResponse({"error": "unknown_request"}, status_code=404)
        return JSONResponse(
            {
                "result": "applied",
                "lead_id": obj["lead_id"],
                "kind": obj["enrichment_type"],
                "status": "enriched",
            }
        )

    return Starlette(
        routes=[Route(PATH, callback, methods=["POST"]), Route("/ping", ping)], lifespan=lifespan
    )


def main() -> None:
    """Entry point: ``python bench/_callback_apps.py {echo,raw} --port N``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("app", choices=["echo", "raw"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.app == "echo":
        app = echo_app()
    else:
        app = raw_app(os.environ["BENCH_DSN"], int(os.environ.get("BENCH_POOL", "32")))
    # Identical to clayloop.cli.serve.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
