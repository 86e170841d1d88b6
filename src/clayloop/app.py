"""The FastAPI application: routes, error answers, start-up checks."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from clayloop import __version__
from clayloop.config import Settings, get_settings
from clayloop.enrichment.endpoints import CALLBACK_PATH, clay_callback
from clayloop.enrichment.endpoints import router as callback_router
from clayloop.kit.db import create_engine
from clayloop.kit.errors import ClayloopError
from clayloop.kit.log import configure_logging, get_logger
from clayloop.kit.rawsql import HotPath
from clayloop.kit.runtime import Runtime, SecretStore, load_token_key
from clayloop.leads.endpoints import router as leads_router
from clayloop.leads.schemas import error_responses
from clayloop.ops.endpoints import router as ops_router
from clayloop.targets.endpoints import router as targets_router
from clayloop.workspaces.endpoints import router as workspace_router

log = get_logger("app")

DESCRIPTION = """
clayloop keeps a lead database and Clay enrichment tables in a reliable loop.

* `POST /api/webhooks/clay` receives Clay HTTP API action callbacks (callback secret).
* `/api/v1/*` is the workspace API (`Authorization: Bearer <workspace API key>`).

Every error answers `{"error": code, "detail": text}` with an HTTP status.
"""


class _App(FastAPI):
    """FastAPI, with ``POST /api/webhooks/clay`` answered ahead of everything else.

    The callback is the hot path. FastAPI's per-request telemetry check and middleware
    stack (error, body limit and exception middleware, exit stack, router) cost about a
    tenth of its CPU, and the handler needs none of it: it reads the raw body itself and
    answers every error it knows as JSON. Anything it does not know becomes the same 500
    answer the app gives elsewhere. The FastAPI route stays for the OpenAPI document
    and answers any other method on the path (405).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != CALLBACK_PATH or scope["method"] != "POST":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        try:
            response = await clay_callback(Request(scope, receive))
        except ClientDisconnect:
            # The sender left before its body was complete: nothing was applied and
            # nobody is there to answer.
            log.info("callback_disconnected", path=CALLBACK_PATH)
            return
        except Exception as exc:  # the 500 answer of _install_error_handlers
            log.error("unhandled_error", error_type=type(exc).__name__, path=CALLBACK_PATH)
            response = _internal_error()
        await response(scope, receive, send)


def _internal_error() -> JSONResponse:
    return JSONResponse(
        {"error": "internal_error", "detail": "an unexpected error happened; see the logs"},
        status_code=500,
    )


async def _start(app: FastAPI, settings: Settings) -> Runtime:
    engine = create_engine(settings)
    token_key = await load_token_key(engine, settings)
    store = SecretStore(engine=engine, server_secrets=list(settings.callback_secrets))
    await store.refresh()
    hot = await HotPath.open(engine, settings.db_callback_pool_size)
    runtime = Runtime(settings=settings, engine=engine, token_key=token_key, secrets=store, hot=hot)
    if settings.trimmed_secret_count:
        log.warning(
            "secrets_trimmed",
            count=settings.trimmed_secret_count,
            detail="whitespace around a configured secret was removed; check the variable",
        )
    if not store.configured:
        log.error(
            "no_callback_secret",
            detail="no callback secret is configured: EVERY Clay callback will be refused "
            "with 401. Set CLAYLOOP_CALLBACK_SECRETS or run "
            "'clayloop workspace add-secret WORKSPACE_ID'.",
        )
    return runtime


def create_app(settings: Settings | None = None, *, run_worker: bool = False) -> FastAPI:
    """Build the application. The database schema must be migrated already."""
    settings = settings or get_settings()
    configure_logging(settings.log_format, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await _start(app, settings)
        app.state.runtime = runtime
        # Everything built at start-up lives as long as the process: move it out of the
        # cyclic GC's generations so a full collection does not walk it in the middle of
        # a callback (a tail-latency spike of tens of milliseconds otherwise).
        gc.collect()
        gc.freeze()
        worker = None
        if run_worker:
            from clayloop.worker import Worker

            worker = Worker(runtime)
            await worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await runtime.hot.close()
            await runtime.engine.dispose()

    app = _App(
        title="clayloop",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    _document_real_validation_errors(app)
    app.include_router(callback_router)
    app.include_router(leads_router)
    app.include_router(workspace_router)
    app.include_router(targets_router)
    app.include_router(ops_router)

    @app.get("/healthz", tags=["operations"], responses=error_responses(503))
    async def healthz(request: Request) -> JSONResponse:
        """200 when the database answers, 503 when it does not."""
        runtime: Runtime = request.app.state.runtime
        try:
            async with runtime.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # any failure to reach the database means "down"
            log.error("healthz_database_unreachable", error_type=type(exc).__name__)
            return JSONResponse(
                {"error": "database_unreachable", "detail": "the database did not answer"},
                status_code=503,
            )
        return JSONResponse(
            {"status": "ok", "database": runtime.engine.dialect.name, "version": __version__}
        )

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics_endpoint() -> PlainTextResponse:
        """Prometheus metrics."""
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)

    return app


_FASTAPI_422 = "#/components/schemas/HTTPValidationError"
_ERROR_OUT = "#/components/schemas/ErrorOut"


def _document_real_validation_errors(app: FastAPI) -> None:
    """Describe FastAPI's automatic 422 answers with the shape the app really sends.

    FastAPI documents a ``{"detail": [...]}`` body for every endpoint with parameters,
    but the handler below answers ``{"error", "detail"}`` like every other error.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                answer = operation.get("responses", {}).get("422")
                content = (answer or {}).get("content", {}).get("application/json", {})
                if content.get("schema") == {"$ref": _FASTAPI_422}:
                    content["schema"] = {"$ref": _ERROR_OUT}
                    answer["description"] = "Input that cannot be accepted"
        components = schema.get("components", {}).get("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ClayloopError)
    async def _clayloop_error(_request: Request, exc: ClayloopError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors: list[Any] = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(
                {"error": "invalid_json", "detail": "the body is not valid JSON"}, status_code=400
            )
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        message = str(first.get("msg", "invalid input"))
        if first.get("type") == "extra_forbidden":
            message = "unknown field"
        return JSONResponse(
            {"error": "invalid_request", "detail": f"{where}: {message}"}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": code, "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", error_type=type(exc).__name__)
        return _internal_error()
