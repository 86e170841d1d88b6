"""``clayloop sim clay``: run the Clay simulator as a standalone server.

The main CLI mounts :data:`sim_app` as ``clayloop sim``. Table ids, webhook URLs and auth tokens
are derived from ``--seed``, so restarting the simulator with the same options gives the same
URLs and tokens and a clayloop configured against it keeps working.
"""

from __future__ import annotations

import random
from enum import StrEnum
from typing import Annotated

import typer
import uvicorn

from clayloop.clay.simulator import ClaySimulator, SimConfig, SimTableSpec

sim_app = typer.Typer(
    help="Run fakes of the services clayloop talks to, as real HTTP servers.",
    no_args_is_help=True,
    add_completion=False,
)


@sim_app.callback()
def sim() -> None:
    """Run fakes of the services clayloop talks to, as real HTTP servers."""
    # A callback keeps ``sim`` a command group even while ``clay`` is its only command.


class StyleChoice(StrEnum):
    """Callback body styles, as accepted by ``--style``."""

    success_flag = "success_flag"
    status = "status"
    clay_columns = "clay_columns"
    placeholders = "placeholders"
    nested = "nested"
    no_ids = "no_ids"
    mixed = "mixed"


def table_token(seed: int, name: str) -> str:
    """The webhook auth token the CLI gives table ``name`` for this seed."""
    return f"simtok_{random.Random(f'{seed}:token:{name}').getrandbits(128):032x}"


def build_config(
    *,
    tables: list[str],
    auth: bool,
    seed: int,
    **options: object,
) -> SimConfig:
    """The simulator configuration for the CLI's options (one table per name)."""
    specs = tuple(
        SimTableSpec(name=name, auth_token=table_token(seed, name) if auth else None)
        for name in tables
    )
    return SimConfig.model_validate({"tables": specs, "seed": seed, **options})


@sim_app.command("clay")
def clay(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    tables: Annotated[
        str, typer.Option(help="Comma-separated table names, one webhook source each.")
    ] = "linkedin,phone",
    auth: Annotated[
        bool, typer.Option(help="Require an x-clay-webhook-auth token on each table.")
    ] = True,
    callback_secret: Annotated[
        str | None,
        typer.Option(
            envvar="CLAYLOOP_SIM_CALLBACK_SECRET",
            help="Value of the secret header on callbacks (none sent when unset).",
        ),
    ] = None,
    callback_header: Annotated[
        str, typer.Option(help="Name of the secret header on callbacks.")
    ] = "x-clay-signature",
    delay: Annotated[float, typer.Option(help="Seconds between a row and its callback.")] = 0.5,
    jitter: Annotated[float, typer.Option(help="Extra random delay, up to this many s.")] = 0.0,
    found: Annotated[float, typer.Option(help="Share of rows found.")] = 0.7,
    not_found: Annotated[float, typer.Option(help="Share of rows not found.")] = 0.2,
    error: Annotated[float, typer.Option(help="Share of rows that error.")] = 0.1,
    style: Annotated[
        StyleChoice, typer.Option(help="Callback body style.")
    ] = StyleChoice.success_flag,
    duplicate_rate: Annotated[float, typer.Option(help="Share of callbacks sent twice.")] = 0.0,
    late_rate: Annotated[float, typer.Option(help="Share of callbacks sent late.")] = 0.0,
    late_delay: Annotated[float, typer.Option(help="Delay of a late callback, in s.")] = 5.0,
    drop_rate: Annotated[float, typer.Option(help="Share of rows never called back.")] = 0.0,
    misconfigured_header: Annotated[
        str,
        typer.Option(help='Content-Type header name as typed in Clay, e.g. "Content-Type:".'),
    ] = "",
    rate: Annotated[float, typer.Option(help="Rows/s accepted per Clay workspace.")] = 10.0,
    burst: Annotated[int, typer.Option(help="Burst size of the rate limit.")] = 20,
    retry_after: Annotated[bool, typer.Option(help="Send Retry-After: 1 with 429s.")] = True,
    limit: Annotated[int, typer.Option(help="Lifetime submissions per webhook.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Seed for ids, tokens and outcomes.")] = 0,
    public_url: Annotated[
        str | None, typer.Option(help="Base URL to print instead of http://HOST:PORT.")
    ] = None,
) -> None:
    """Serve a fake Clay: table webhooks that call clayloop back like an HTTP API action."""
    names = [name.strip() for name in tables.split(",") if name.strip()]
    try:
        config = build_config(
            tables=names,
            auth=auth,
            seed=seed,
            callback_secret=callback_secret,
            callback_header=callback_header,
            callback_delay_s=delay,
            callback_jitter_s=jitter,
            found=found,
            not_found=not_found,
            error=error,
            style=style.value,
            duplicate_rate=duplicate_rate,
            late_rate=late_rate,
            late_delay_s=late_delay,
            drop_rate=drop_rate,
            misconfigured_header=misconfigured_header,
            rate_per_s=rate,
            burst=burst,
            send_retry_after=retry_after,
            submission_limit=limit,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc

    base_url = (public_url or f"http://{host}:{port}").rstrip("/")
    simulator = ClaySimulator(config, public_url=base_url)
    typer.echo(f"Clay simulator on {base_url}  (control API: {base_url}/_sim/stats)")
    for table in simulator.tables():
        typer.echo(f"  table {table.name} ({table.id})")
        typer.echo(f"    webhook URL: {table.url(base_url)}")
        typer.echo(f"    auth token:  {table.auth_token or '(none)'}")
    secret = "set" if callback_secret else "not set"
    typer.echo(f"  callbacks: {callback_header} ({secret}), style {style.value}, delay {delay:g}s")
    uvicorn.run(simulator.build_app(), host=host, port=port, log_level="warning")
