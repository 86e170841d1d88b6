"""Plain SQL on the database driver, inside a transaction we control: for hot paths only.

SQLAlchemy builds, caches and executes a Core statement for ~0.3 ms of CPU; written
once as SQL text and sent through the driver the same statement costs a fraction of
that (bench/callback.py measured 3.4 ms vs 0.8 ms per callback). Hot-path queries are
therefore plain SQL with ``$1 … $n`` parameters, one text for both databases: asyncpg
takes it as is, SQLite gets ``?1 … ?n``. The connection still comes from SQLAlchemy's
pool, so pool sizing and start-up settings (WAL, busy timeout) are shared.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

_DOLLAR = re.compile(r"\$(\d+)")


class Query:
    """One named SQL statement, prepared for both drivers."""

    def __init__(self, sql: str) -> None:
        self.pg = " ".join(sql.split())
        self.sqlite = _DOLLAR.sub(r"?\1", self.pg)

    def __repr__(self) -> str:
        return f"Query({self.pg!r})"


class RawTx(Protocol):
    """A transaction on a driver connection."""

    dialect: str

    async def fetch(self, query: Query, *args: Any) -> list[dict[str, Any]]:
        """Rows as dicts."""

    async def execute(self, query: Query, *args: Any) -> None:
        """Run a statement."""

    async def executemany(self, query: Query, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per parameter row."""


class _PgTx:
    dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, query: Query, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._conn.fetch(query.pg, *args)]

    async def execute(self, query: Query, *args: Any) -> None:
        await self._conn.execute(query.pg, *args)

    async def executemany(self, query: Query, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(query.pg, rows)


def _sqlite_value(value: Any) -> Any:
    # The text form SQLAlchemy's SQLite DateTime reads and compares (UTC, no zone suffix).
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


class _SqliteTx:
    dialect = "sqlite"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, query: Query, *args: Any) -> list[dict[str, Any]]:
        cursor = await self._conn.execute(query.sqlite, [_sqlite_value(a) for a in args])
        names = [d[0] for d in cursor.description or ()]
        rows = await cursor.fetchall()
        await cursor.close()
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def execute(self, query: Query, *args: Any) -> None:
        cursor = await self._conn.execute(query.sqlite, [_sqlite_value(a) for a in args])
        await cursor.close()

    async def executemany(self, query: Query, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(query.sqlite, [[_sqlite_value(v) for v in r] for r in rows])


@asynccontextmanager
async def _driver_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """A driver connection checked out of the engine's pool, returned to it afterwards.

    ``engine.raw_connection()`` costs about half of ``engine.connect()`` plus
    ``get_raw_connection()`` (no Connection objects). A connection the driver reports
    closed (the database restarted) is discarded instead of going back to the pool.
    """
    pooled = await engine.raw_connection()
    driver: Any = pooled.driver_connection
    try:
        yield driver
    finally:
        closed = getattr(driver, "is_closed", None)
        if closed is not None and closed():
            await greenlet_spawn(pooled.invalidate)
        await greenlet_spawn(pooled.close)


@asynccontextmanager
async def raw_autocommit(engine: AsyncEngine) -> AsyncIterator[RawTx]:
    """A pooled PostgreSQL driver connection outside any transaction: each statement commits.

    For single statements that are atomic on their own (see
    :func:`clayloop.enrichment.callbacks.apply_unlocked`); it saves the BEGIN and
    COMMIT round trips of :func:`raw_transaction`.
    """
    if engine.dialect.name != "postgresql":
        raise ValueError("raw_autocommit is for PostgreSQL only")
    async with _driver_connection(engine) as driver:
        yield _PgTx(driver)


@asynccontextmanager
async def raw_transaction(engine: AsyncEngine) -> AsyncIterator[RawTx]:
    """A pooled driver connection in one transaction: committed on success, else rolled back.

    SQLite transactions start with BEGIN IMMEDIATE, like every other clayloop write,
    so writers queue on the database lock instead of failing on upgrade.
    """
    async with _driver_connection(engine) as driver:
        if engine.dialect.name == "postgresql":
            async with driver.transaction():
                yield _PgTx(driver)
            return
        await driver.execute("BEGIN IMMEDIATE")
        try:
            yield _SqliteTx(driver)
        except BaseException:
            await driver.execute("ROLLBACK")
            raise
        await driver.execute("COMMIT")
