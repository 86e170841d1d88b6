"""``clayloop target …`` against the test database, as an operator runs it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from clayloop import models as m
from tests.conftest import WS
from tests.e2e.harness import Api, Loop, Sim, run_cli, settle, unique_linkedin
from tests.support.helpers import rows

MakeWs = Callable[..., Awaitable[WS]]
TOKEN = "cli-secret-token-0123456789"
Cli = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Cli:
    """Run ``clayloop ARGS…`` with CLAYLOOP_DATABASE_URL pointing at the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAYLOOP_")}
    env["CLAYLOOP_DATABASE_URL"] = database_url

    async def call(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_cli, list(args), env, tmp_path)

    return call


def flags(options: dict[str, str]) -> list[str]:
    """``--option value`` pairs as arguments."""
    return [item for pair in options.items() for item in pair]


def shown(done: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a successful command printed."""
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_add_list_pause_resume_and_the_token_is_never_printed(
    cli: Cli, make_ws: MakeWs, client: httpx.AsyncClient
) -> None:
    """A target made on the command line is listed, paused and resumed; its token stays hidden."""
    ws = await make_ws()
    options = {
        "--workspace": ws.id,
        "--kind": "phone",
        "--url": "https://api.clay.com/v3/sources/webhook/pull-in-data-from-a-webhook-abc",
        "--auth-token": TOKEN,
        "--rate": "5",
        "--burst": "8",
        "--limit": "100",
        "--daily-cap": "7",
        "--cost-per-row": "0.25",
        "--required": "email,first_name",
        "--name": "phones",
    }
    added_run = await cli("target", "add", *flags(options))
    added = shown(added_run)
    assert (added["kind"], added["rate"], added["burst"], added["limit"]) == ("phone", 5, 8, 100)
    assert (added["daily_cap"], added["cost_per_row"]) == (7, 0.25)
    assert added["required_fields"] == ["email", "first_name"]
    assert added["auth_token_hint"] == "…" + TOKEN[-4:]
    assert added["state"] == "active"

    listed_run = await cli("target", "list", "--workspace", ws.id)
    (listed,) = shown(listed_run)
    assert listed["id"] == added["id"]
    paused_run = await cli("target", "pause", added["id"], "--reason", "rotating the token")
    paused = shown(paused_run)
    assert (paused["state"], paused["paused_reason"]) == ("paused", "rotating the token")
    api = Api(client, ws)
    assert (await api.targets())[added["id"]]["state"] == "paused"
    resumed_run = await cli("target", "resume", added["id"])
    assert shown(resumed_run)["state"] == "active"
    assert (await api.targets())[added["id"]]["state"] == "active"

    for done in (added_run, listed_run, paused_run, resumed_run):
        assert TOKEN not in done.stdout + done.stderr
        assert TOKEN[:12] not in done.stdout + done.stderr


async def test_a_target_added_on_the_command_line_receives_rows(
    cli: Cli, loop: Loop, sim: Sim, make_ws: MakeWs, engine: AsyncEngine
) -> None:
    """The token given to 'target add' is the one the worker sends as x-clay-webhook-auth."""
    ws = await make_ws()
    table = sim.table("phone", auth_token=TOKEN)
    options = {"--workspace": ws.id, "--kind": "phone", "--url": sim.webhook(table)}
    shown(await cli("target", "add", *flags(options), "--auth-token", TOKEN))
    api = loop.api(ws)
    lead = await api.lead(linkedin_url=unique_linkedin())
    await settle(engine, ws, sim)
    assert [r["lead_id"] for r in sim.rows(table)] == [lead["id"]]
    assert sim.stats()["rejected"] == {}


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--kind", "email", "--kind: Input should be 'linkedin' or 'phone'"),
        ("--url", "ftp://example.com/x", "--url: url must be an http(s) URL"),
        ("--url", "https://example.com/a b", "--url: url must not contain whitespace"),
        ("--rate", "0", "--rate: Input should be greater than 0"),
        ("--required", "nickname", "--required: unknown required field(s) ['nickname']"),
    ],
)
async def test_bad_target_input_is_refused_with_a_clear_message(
    cli: Cli, make_ws: MakeWs, engine: AsyncEngine, option: str, value: str, message: str
) -> None:
    """Bad input exits non-zero, says which option is wrong, and adds nothing."""
    ws = await make_ws()
    given = {"--kind": "phone", "--url": "https://example.com/hook", option: value}
    done = await cli(
        "target", "add", "--workspace", ws.id, *[x for kv in given.items() for x in kv]
    )
    assert done.returncode != 0
    assert message in " ".join(done.stderr.split())
    assert done.stdout == ""
    t = m.clay_target
    assert await rows(engine, sa.select(t.c.id).where(t.c.workspace_id == ws.id)) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["target", "add", "--workspace", "no-such-workspace", "--kind", "phone"],
            "no workspace with id 'no-such-workspace'",
        ),
        (["target", "pause", "no-such-target"], "no target with id 'no-such-target'"),
        (["target", "resume", "4b1f3c3e-0000-4000-8000-000000000000"], "no target with id"),
    ],
)
async def test_unknown_ids_are_refused(cli: Cli, args: list[str], message: str) -> None:
    """An unknown workspace or target exits non-zero with a message naming it."""
    if "add" in args:
        args = [*args, "--url", "https://example.com/hook"]
    done = await cli(*args)
    assert done.returncode != 0
    assert message in done.stderr
    assert done.stdout == ""
