"""Plain SQL on the database driver, inside a transaction we control: for hot paths only.

SQLAlchemy builds, caches and executes a Core statement for ~0.3 ms of CPU; written
once as SQL text and sent through the driver the same statement costs a fraction of
that (bench/callback.py measured 3.4 ms vs 0.8 ms per callback). Hot-path queries are
therefore plain SQL with ``$1 … $n`` parameters, one text for both databases: asyncpg
takes it as is, SQLite gets ``?1 … ?n``. They run through a :class:`HotPath`: an
asyncpg pool of its own on PostgreSQL, SQLAlchemy's pool on SQLite (so start-up
settings such as WAL and the busy timeout are shared).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
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

    async def fetch(self, query: Query, *args: Any) -> list[Any]:
        """Rows, each read by column name (``row["id"]``)."""

    async def execute(self, query: Query, *args: Any) -> None:
        """Run a statement."""

    async def executemany(self, query: Query, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per parameter row."""


class _PgTx:
    dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, query: Query, *args: Any) -> list[Any]:
        # asyncpg records are read by column name as they are: no copy into dicts.
        rows: list[Any] = await self._conn.fetch(query.pg, *args)
        return rows

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

    async def fetch(self, query: Query, *args: Any) -> list[Any]:
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


# Options of SQLAlchemy's asyncpg dialect that asyncpg.connect() does not take.
_DIALECT_ONLY = ("prepared_statement_cache_size", "prepared_statement_name_func")


async def _keep_session(_conn: Any) -> None:
    """Pool reset: nothing. Hot-path statements leave no session state behind.

    asyncpg's default reset sends ``RESET ALL; UNLISTEN *; …`` on every release, a
    round trip per callback; an open transaction is still rolled back by the pool.
    """


class HotPath:
    """Where hot-path SQL runs: its own asyncpg pool on PostgreSQL, the engine's on SQLite.

    On PostgreSQL a checkout and return through an asyncpg pool cost 12 µs of CPU,
    through SQLAlchemy's pool 25 µs (``engine.raw_connection()``) to 50 µs
    (``engine.connect()``), and SQLAlchemy starts two greenlets per checkout, each
    mapping and unmapping a 16 KiB frame stack. The pool is
    opened from the engine's own connection arguments, so it reaches the same
    database with the same options, and holds at most ``size`` connections, apart from
    the engine's pool.
    """

    def __init__(self, engine: AsyncEngine, pool: Any = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._pool = pool

    @classmethod
    async def open(cls, engine: AsyncEngine, size: int) -> HotPath:
        """The hot path of ``engine``, with a pool of ``size`` connections on PostgreSQL."""
        if engine.dialect.name != "postgresql":
            return cls(engine)
        _, options = engine.dialect.create_connect_args(engine.url)
        for name in _DIALECT_ONLY:
            options.pop(name, None)
        pool = await asyncpg.create_pool(min_size=1, max_size=size, reset=_keep_session, **options)
        return cls(engine, pool)

    async def close(self) -> None:
        """Close the pool (the engine is the caller's)."""
        if self._pool is not None:
            await self._pool.close()

    @asynccontextmanager
    async def _driver(self) -> AsyncIterator[Any]:
        if self._pool is not None:
            # No acquire timeout: asyncpg implements one by wrapping every acquire in a
            # task of its own. A callback beyond the pool waits for a connection.
            async with self._pool.acquire() as conn:
                yield conn
            return
        # SQLite, or a HotPath made without a pool: a driver connection from the engine.
        pooled = await self.engine.raw_connection()
        driver: Any = pooled.driver_connection
        try:
            yield driver
        finally:
            await greenlet_spawn(pooled.close)

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[RawTx]:
        """A PostgreSQL connection outside any transaction: each statement commits.

        For single statements that are atomic on their own (see
        :func:`clayloop.enrichment.callbacks.apply_unlocked`); it saves the BEGIN and
        COMMIT round trips of :meth:`transaction`.
        """
        if self.dialect != "postgresql":
            raise ValueError("autocommit is for PostgreSQL only")
        async with self._driver() as driver:
            yield _PgTx(driver)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[RawTx]:
        """A connection in one transaction: committed on success, else rolled back.

        SQLite transactions start with BEGIN IMMEDIATE, like every other clayloop write,
        so writers queue on the database lock instead of failing on upgrade.
        """
        async with self._driver() as driver:
            if self.dialect == "postgresql":
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
