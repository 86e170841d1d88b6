"""The ``clayloop`` command line."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncConnection

from clayloop import models as m
from clayloop.config import Settings, get_settings
from clayloop.kit.db import DatabaseURLError, create_engine
from clayloop.kit.errors import ClayloopError

T = TypeVar("T")

app = typer.Typer(
    help="clayloop: keeps a lead database and Clay enrichment tables in a reliable loop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
workspace_app = typer.Typer(help="Workspaces, API keys, callback secrets.", no_args_is_help=True)
dev_app = typer.Typer(help="Developer helpers (not for production).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(workspace_app, name="workspace")
target_app = typer.Typer(help="Clay table webhooks that rows are sent to.", no_args_is_help=True)
app.add_typer(dev_app, name="dev")
app.add_typer(target_app, name="target")

err = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    """Print an error for a person and exit non-zero."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def emit(data: Any) -> None:
    """Print JSON on stdout (machine-readable output)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def run(coro_fn: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    """Run an async command body, turning clayloop errors into a message and exit 1."""
    try:
        settings = get_settings()
    except ValueError as exc:
        fail(f"invalid configuration: {str(exc).splitlines()[0]}")
        raise  # unreachable
    try:
        return asyncio.run(coro_fn(settings))
    except ClayloopError as exc:
        fail(exc.detail)
    except DatabaseURLError as exc:
        fail(str(exc))
    except (OSError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        fail(f"cannot reach the database ({type(exc).__name__}); check CLAYLOOP_DATABASE_URL")
    raise AssertionError("unreachable")


def in_transaction(body: Callable[[AsyncConnection], Coroutine[Any, Any, T]]) -> T:
    """Run ``body`` in one database transaction; errors become a message and exit 1."""

    async def go(settings: Settings) -> T:
        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                return await body(conn)
        finally:
            await engine.dispose()

    return run(go)


async def _migrate(settings: Settings) -> None:
    from clayloop.kit.migrate import upgrade_async

    await upgrade_async(settings.database_url)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending database migrations (idempotent)."""
    run(_migrate)
    err.print("database schema is up to date")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve HTTP only; run 'clayloop worker' apart")
    ] = False,
) -> None:
    """Apply pending migrations, then serve the HTTP API (and the worker, unless --no-worker)."""
    import uvicorn

    from clayloop.app import create_app

    settings = get_settings()
    run(_migrate)
    application = create_app(settings, run_worker=not no_worker)
    uvicorn.run(
        application,
        host=host or settings.host,
        port=port or settings.port,
        log_level="warning",
        access_log=False,
    )


@workspace_app.command("create")
def workspace_create(name: str) -> None:
    """Create a workspace; prints {"id", "api_key"} (the key is shown once, stored hashed)."""
    from clayloop.workspaces.service import create_workspace

    async def body(conn: AsyncConnection) -> tuple[str, str]:
        return await create_workspace(conn, name)

    workspace_id, key = in_transaction(body)
    emit({"id": workspace_id, "api_key": key})


@workspace_app.command("add-secret")
def workspace_add_secret(
    workspace_id: str,
    secret: Annotated[
        str | None, typer.Option(help="Use this secret (16+ chars) instead of a generated one")
    ] = None,
) -> None:
    """Add a callback secret to a workspace; prints it once. Older secrets keep working."""
    from clayloop.workspaces.service import add_callback_secret

    async def body(conn: AsyncConnection) -> tuple[str, bool]:
        return await add_callback_secret(conn, workspace_id, secret)

    value, trimmed = in_transaction(body)
    if trimmed:
        err.print("[yellow]warning:[/] whitespace around the secret was removed")
    emit({"workspace_id": workspace_id, "callback_secret": value})


@workspace_app.command("clear-secrets")
def workspace_clear_secrets(workspace_id: str) -> None:
    """Remove every callback secret of a workspace (end of a rotation)."""
    from clayloop.workspaces.service import remove_callback_secrets

    async def body(conn: AsyncConnection) -> int:
        return await remove_callback_secrets(conn, workspace_id)

    emit({"workspace_id": workspace_id, "removed": in_transaction(body)})


@workspace_app.command("settings")
def workspace_settings(
    workspace_id: str,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE (VALUE is JSON when it parses, else text)"),
    ] = None,
) -> None:
    """Show a workspace's settings, or change some with --set KEY=VALUE."""
    from clayloop.workspaces.service import get_workspace, update_settings

    changes: dict[str, Any] = {}
    for item in set_ or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            fail(f"--set takes KEY=VALUE, got {item!r}")
        try:
            changes[key.strip()] = json.loads(raw)
        except ValueError:
            changes[key.strip()] = raw

    async def body(conn: AsyncConnection) -> dict[str, Any]:
        if changes:
            new = await update_settings(conn, workspace_id, changes)
        else:
            new = (await get_workspace(conn, workspace_id)).settings
        return new.model_dump()

    emit(in_transaction(body))


@dev_app.command("mark-sent")
def dev_mark_sent(request_id: str) -> None:
    """Move a queued request to 'sent' as if the worker had sent it (to exercise callbacks)."""
    from clayloop.kit.clock import utcnow

    async def body(conn: AsyncConnection) -> dict[str, Any]:
        now = utcnow()
        result = await conn.execute(
            sa.update(m.enrichment_request)
            .where(
                m.enrichment_request.c.id == request_id,
                m.enrichment_request.c.status.in_(("queued", "sending")),
            )
            .values(
                status="sent",
                reason=None,
                sent_at=now,
                updated_at=now,
                attempts=m.enrichment_request.c.attempts + 1,
                send_count=m.enrichment_request.c.send_count + 1,
                lease_until=None,
                lease_owner=None,
            )
        )
        if result.rowcount != 1:
            status = (
                await conn.execute(
                    sa.select(m.enrichment_request.c.status).where(
                        m.enrichment_request.c.id == request_id
                    )
                )
            ).scalar_one_or_none()
            if status is None:
                raise ClayloopError(404, "unknown_request", f"no request {request_id!r}")
            raise ClayloopError(409, "not_queued", f"request {request_id} is {status}, not queued")
        return {"request_id": request_id, "status": "sent"}

    emit(in_transaction(body))


@app.command("callback-test")
def callback_test(
    lead: Annotated[str, typer.Option("--lead", help="Lead id")],
    kind: Annotated[str, typer.Option("--kind", help="linkedin or phone")],
    value: Annotated[str, typer.Option("--value", help="The value Clay would send back")],
    show_secret: Annotated[
        bool, typer.Option("--show-secret", help="Write the secret into the command itself")
    ] = False,
) -> None:
    """Print a ready-to-run curl that calls back like Clay would, and the expected answer."""
    from clayloop.ops.callback_test import build_callback_test

    if kind not in m.KINDS:
        fail(f"--kind must be one of {', '.join(m.KINDS)}, got {kind!r}")

    async def body(settings: Settings) -> dict[str, Any]:
        return await build_callback_test(settings, lead, kind, value, show_secret=show_secret)

    out = run(body)
    sys.stdout.write("# Run this to call back like Clay's HTTP API action would:\n")
    if out["secret_note"]:
        sys.stdout.write(f"# {out['secret_note']}\n")
    sys.stdout.write(" \\\n  ".join(out["curl"]) + "\n\n")
    sys.stdout.write("# Expected answer (HTTP 200):\n")
    sys.stdout.write(json.dumps(out["expected"]) + "\n")


@target_app.command("add")
def target_add(
    workspace: Annotated[str, typer.Option("--workspace", help="Workspace id")],
    kind: Annotated[str, typer.Option("--kind", help="linkedin or phone")],
    url: Annotated[str, typer.Option("--url", help="The Clay table's webhook URL")],
    auth_token: Annotated[
        str | None, typer.Option("--auth-token", help="Sent as x-clay-webhook-auth")
    ] = None,
    rate: Annotated[float, typer.Option(help="Rows per second")] = 10.0,
    burst: Annotated[int, typer.Option(help="Burst size")] = 20,
    limit: Annotated[int, typer.Option(help="Lifetime submissions of the webhook")] = 50000,
    daily_cap: Annotated[int | None, typer.Option("--daily-cap", help="Rows per UTC day")] = None,
    cost_per_row: Annotated[float, typer.Option("--cost-per-row", help="Cost of one row")] = 0.0,
    name: Annotated[str | None, typer.Option(help="A name for people")] = None,
    group: Annotated[
        str | None, typer.Option(help="Shared Clay-account rate group (default: per workspace)")
    ] = None,
    required: Annotated[
        str | None, typer.Option(help="Comma-separated required row fields (default: email)")
    ] = None,
    priority: Annotated[int, typer.Option(help="Lower is used first")] = 0,
) -> None:
    """Add a Clay table webhook for one kind; prints the target (token hinted, never whole)."""
    from pydantic import ValidationError

    from clayloop.targets.schemas import TargetIn
    from clayloop.targets.service import add_target

    try:
        data = TargetIn(
            kind=kind,
            url=url,
            name=name,
            auth_token=auth_token,
            rate=rate,
            burst=burst,
            limit=limit,
            daily_cap=daily_cap,
            cost_per_row=cost_per_row,
            group=group,
            required_fields=[f.strip() for f in required.split(",") if f.strip()]
            if required
            else None,
            priority=priority,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "input"
        option = {"required_fields": "required"}.get(field, field.replace("_", "-"))
        # pydantic prefixes a validator's own message with "Value error, "; say it plainly.
        message = str(first["msg"]).removeprefix("Value error, ")
        fail(f"--{option}: {message}")
        raise

    out = in_transaction(lambda conn: add_target(conn, workspace, data))
    emit(out.model_dump())


@target_app.command("list")
def target_list(
    workspace: Annotated[str | None, typer.Option("--workspace", help="Only this one")] = None,
) -> None:
    """List targets with usage, state and last error."""
    from clayloop.targets.service import list_targets

    items = in_transaction(lambda conn: list_targets(conn, workspace))
    emit([t.model_dump() for t in items])


@target_app.command("pause")
def target_pause(
    target_id: str,
    reason: Annotated[str | None, typer.Option(help="Why (shown to operators)")] = None,
) -> None:
    """Stop sending to a target; its leads stay queued with reason target_paused."""
    from clayloop.targets.service import set_target_state

    out = in_transaction(
        lambda conn: set_target_state(conn, None, target_id, paused=True, reason=reason)
    )
    emit(out.model_dump())


@target_app.command("resume")
def target_resume(target_id: str) -> None:
    """Send to a target again."""
    from clayloop.targets.service import set_target_state

    out = in_transaction(lambda conn: set_target_state(conn, None, target_id, paused=False))
    emit(out.model_dump())


@app.command()
def status(
    workspace: Annotated[str | None, typer.Option("--workspace", help="Only this one")] = None,
) -> None:
    """Where every request stands and why, rows sent, and open alerts (JSON)."""
    from clayloop.ops.status import loop_status

    emit(in_transaction(lambda conn: loop_status(conn, workspace)))


@app.command()
def worker() -> None:
    """Run the dispatcher, sweeper and monitors until SIGTERM/SIGINT."""
    import signal

    from clayloop.kit.log import configure_logging
    from clayloop.kit.rawsql import HotPath
    from clayloop.kit.runtime import Runtime, SecretStore, load_token_key
    from clayloop.worker import Worker

    async def body(settings: Settings) -> None:
        configure_logging(settings.log_format, settings.log_level)
        await _migrate(settings)
        engine = create_engine(settings)
        token_key = await load_token_key(engine, settings)
        runtime = Runtime(
            settings=settings,
            engine=engine,
            token_key=token_key,
            secrets=SecretStore(engine=engine, server_secrets=[]),
            # A worker answers no callbacks: the engine's pool is enough.
            hot=HotPath(engine),
        )
        instance = Worker(runtime)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, instance.request_stop)
        try:
            await instance.run_until_stopped()
        finally:
            await engine.dispose()

    run(body)


@app.command()
def demo(
    leads: Annotated[int, typer.Option(help="How many sample leads to load")] = 40,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the loop to settle")] = 60,
    keep: Annotated[
        str | None, typer.Option(help="Keep the demo database in this directory")
    ] = None,
) -> None:
    """Run the whole loop locally: service, worker and Clay simulator on a throwaway database."""
    from pathlib import Path

    from rich.table import Table

    from clayloop.ops.demo import run_demo

    if leads < 1 or leads > 5000:
        fail("--leads must be between 1 and 5000")
    directory = Path(keep).resolve() if keep else None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    err.print(f"running the loop over {leads} sample leads (simulated Clay, SQLite)…")
    summary = asyncio.run(run_demo(leads, timeout, directory))
    out = Console()
    table = Table(title="clayloop demo: what happened to every request")
    for column in ("kind", "status", "reason", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for row in summary["requests"]:
        table.add_row(row["kind"], row["status"], row["reason"] or "", str(row["count"]))
    out.print(table)
    sim = summary["simulator"]
    out.print(
        f"rows sent to Clay: {summary['rows_sent']} (simulator accepted {sim['accepted']}, "
        f"refused {sum(sim['rejected'].values())}); callbacks: {sim['callbacks_sent']}"
    )
    out.print(
        "leads by enrichment status: "
        + ", ".join(f"{k}={v}" for k, v in sorted(summary["leads"].items()))
    )
    out.print(f"open alerts: {len(summary['alerts'])}")
    if keep:
        out.print(f"database kept at {summary['database']}")


def _register_simulators() -> None:
    from clayloop.clay.sim_cli import sim_app

    app.add_typer(sim_app, name="sim", help="Simulators of third-party services.")


_register_simulators()


def main() -> None:
    """Entry point of the ``clayloop`` script."""
    app()
