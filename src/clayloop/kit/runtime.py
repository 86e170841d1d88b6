"""The process-wide pieces a request needs: settings, engine, token key, callback secrets."""

from __future__ import annotations

import asyncio
import secrets as pysecrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from clayloop import models as m
from clayloop.clay.auth import Credential, verify_callback
from clayloop.config import Settings
from clayloop.enrichment.callbacks import UnlockedPath
from clayloop.kit.rawsql import HotPath
from clayloop.workspaces.service import all_workspace_secrets

SECRET_REFRESH_SECONDS = 5.0
MISS_REFRESH_SECONDS = 1.0


@dataclass
class SecretStore:
    """Callback secrets: the server-wide ones from settings and every workspace's.

    Workspace secrets are cached and re-read every few seconds, and at most once a
    second when a callback matches none (so a secret added a moment ago works at
    once, and a flood of bad credentials costs at most one query a second). One
    caller re-reads while the others wait for it: 32 callbacks finding the cache old
    at the same moment make one query, not 32 (which also grew the pool each time).
    """

    engine: AsyncEngine
    server_secrets: list[str]
    workspace_secrets: list[tuple[str, str]] = field(default_factory=list)
    loaded_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def configured(self) -> bool:
        """Whether any callback secret exists at all (otherwise every callback is refused)."""
        return bool(self.server_secrets or self.workspace_secrets)

    def _pairs(self) -> list[tuple[str | None, str]]:
        return [(None, s) for s in self.server_secrets] + list(self.workspace_secrets)

    async def refresh(self) -> None:
        """Re-read the workspace secrets from the database."""
        async with self.engine.connect() as conn:
            self.workspace_secrets = await all_workspace_secrets(conn)
        self.loaded_at = time.monotonic()

    async def _refresh_if_older(self, seconds: float) -> None:
        if time.monotonic() - self.loaded_at <= seconds:
            return
        async with self._lock:
            # Whoever held the lock may have just re-read them.
            if time.monotonic() - self.loaded_at > seconds:
                await self.refresh()

    async def verify(self, headers: Mapping[str, str], body: bytes) -> Credential | None:
        """The credential a callback carries, or None."""
        await self._refresh_if_older(SECRET_REFRESH_SECONDS)
        credential = verify_callback(headers, body, self._pairs())
        if credential is None and time.monotonic() - self.loaded_at > MISS_REFRESH_SECONDS:
            await self._refresh_if_older(MISS_REFRESH_SECONDS)
            credential = verify_callback(headers, body, self._pairs())
        return credential


@dataclass
class Runtime:
    """Everything shared by the requests of one process."""

    settings: Settings
    engine: AsyncEngine
    token_key: str
    secrets: SecretStore
    # Where the callback's SQL runs (an asyncpg pool of its own on PostgreSQL in serve).
    hot: HotPath
    # PostgreSQL: the callback's unlocked reads and group-committed writes, on ``hot``.
    unlocked: UnlockedPath = field(init=False)

    def __post_init__(self) -> None:
        self.unlocked = UnlockedPath(self.hot, lanes=self.settings.db_callback_write_lanes)


async def load_token_key(engine: AsyncEngine, settings: Settings) -> str:
    """The server key for callback tokens: from settings, else generated once and kept in the DB."""
    if settings.token_key:
        return settings.token_key
    async with engine.begin() as conn:
        found = (
            await conn.execute(
                sa.select(m.app_state.c.value).where(m.app_state.c.key == "token_key")
            )
        ).scalar_one_or_none()
        if found:
            return str(found)
        value = pysecrets.token_hex(32)
        await conn.execute(sa.insert(m.app_state).values(key="token_key", value=value))
        return value
