"""Database engines: one code path for SQLite (default) and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from clayloop.config import Settings


class DatabaseURLError(ValueError):
    """A database URL clayloop cannot use, with what to write instead."""


def to_async_url(url: str) -> str:
    """Turn the URL forms people type into one with clayloop's async driver.

    ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``postgresql://…``,
    ``postgres://…`` (Heroku style) and already-async URLs are accepted.
    """
    raw = url.strip()
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    try:
        parsed = make_url(raw)
    except ArgumentError as exc:
        raise DatabaseURLError(
            "CLAYLOOP_DATABASE_URL is not a database URL; expected sqlite:///path.db "
            "or postgresql://user@host/db"
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise DatabaseURLError(
        f"database backend {backend!r} is not supported; use sqlite:///path.db or postgresql://…"
    )


def is_sqlite(engine: AsyncEngine) -> bool:
    """Whether the engine talks to SQLite."""
    return engine.dialect.name == "sqlite"


def create_engine(settings: Settings, *, url: str | None = None) -> AsyncEngine:
    """Create the async engine for the configured database."""
    async_url = to_async_url(url or settings.database_url)
    kwargs: dict[str, Any] = {}
    if async_url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    else:
        # The pool must cover the concurrency admitted, or requests queue for a connection
        # and the tail latency explodes (see DESIGN.md "Hot paths").
        kwargs["pool_size"] = settings.db_pool_size
        kwargs["max_overflow"] = settings.db_max_overflow
        kwargs["pool_pre_ping"] = False
    engine = create_async_engine(async_url, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # aiosqlite's default transaction handling issues BEGIN lazily (deferred);
        # we take control so that writes use BEGIN IMMEDIATE and never deadlock on upgrade.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
