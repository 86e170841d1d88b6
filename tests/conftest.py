"""Shared fixtures: a real database (SQLite or PostgreSQL), the app on a real socket."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from clayloop.app import create_app
from clayloop.config import Settings
from clayloop.kit.db import create_engine
from clayloop.kit.live import LiveServer
from clayloop.kit.migrate import upgrade_async
from clayloop.workspaces.service import add_callback_secret, create_workspace
from tests.support import database

SECRET = "test-callback-secret-0123456789"

# Keep the developer's own .env and environment out of the tests.
for _name in list(os.environ):
    if _name.startswith("CLAYLOOP_") and not _name.startswith("CLAYLOOP_TEST"):
        del os.environ[_name]


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A migrated, empty database for this test session."""
    if database.backend() == "postgresql":
        reason = await database.postgres_reachable()
        if reason:
            pytest.skip(f"this run targets PostgreSQL, but {reason}")
        url = await database.create_postgres_database()
        await upgrade_async(url)
        yield url
        await database.drop_postgres_database(url)
    else:
        url = database.sqlite_url(tmp_path_factory.mktemp("db"))
        await upgrade_async(url)
        yield url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for a test server on ``database_url``."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "callback_secrets": [SECRET],
        "log_format": "json",
        "log_level": "WARNING",
        "token_key": "test-token-key",
        "db_pool_size": 30,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    """The settings of the shared test server."""
    return make_settings(database_url)


@pytest.fixture(scope="session")
def server(settings: Settings) -> Iterator[LiveServer]:
    """The app, without its worker, on a real loopback socket."""
    live = LiveServer(create_app(settings)).start()
    yield live
    live.stop()


@pytest.fixture(scope="session")
async def engine(database_url: str, settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A database engine for the tests' own setup and inspection."""
    eng = create_engine(settings)
    yield eng
    await eng.dispose()


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the shared test server."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


@dataclass
class WS:
    """A workspace made for one test."""

    id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        """Headers that authenticate as this workspace."""
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture
async def ws(engine: AsyncEngine) -> WS:
    """A fresh workspace that sends all leads (no sentiment filter)."""
    from clayloop.workspaces.service import update_settings

    async with engine.begin() as conn:
        workspace_id, key = await create_workspace(conn, "test")
        await update_settings(conn, workspace_id, {"eligibility": "all_leads"})
    return WS(workspace_id, key)


async def new_workspace(engine: AsyncEngine, secret: str | None = None, **settings: Any) -> WS:
    """A workspace with optional settings and its own callback secret."""
    from clayloop.workspaces.service import update_settings

    async with engine.begin() as conn:
        workspace_id, key = await create_workspace(conn, "test")
        if settings:
            await update_settings(conn, workspace_id, settings)
        if secret:
            await add_callback_secret(conn, workspace_id, secret)
    return WS(workspace_id, key)


@pytest.fixture
def workspace_factory(engine: AsyncEngine) -> Any:
    """Make extra workspaces: ``await workspace_factory(secret=..., **settings)``."""

    async def make(secret: str | None = None, **settings: Any) -> WS:
        return await new_workspace(engine, secret, **settings)

    return make


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return Path(__file__).resolve().parent.parent
