"""Test databases: a fresh SQLite file or a throwaway PostgreSQL database per session.

``CLAYLOOP_TEST_DB=postgresql`` runs the suite on PostgreSQL (the server named by
``CLAYLOOP_TEST_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``);
anything else, or nothing, runs it on SQLite.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import asyncpg

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def backend() -> str:
    """The database the suite runs against: ``sqlite`` or ``postgresql``."""
    return (
        "postgresql" if os.environ.get("CLAYLOOP_TEST_DB", "").startswith("postgres") else "sqlite"
    )


def postgres_admin_url() -> str:
    """Where to create throwaway PostgreSQL databases."""
    return os.environ.get("CLAYLOOP_TEST_POSTGRES_URL", DEFAULT_PG)


async def postgres_reachable() -> str | None:
    """None when PostgreSQL answers, else why not (for the skip message)."""
    try:
        conn = await asyncpg.connect(postgres_admin_url(), timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL is not reachable at {postgres_admin_url()} ({type(exc).__name__})"
    await conn.close()
    return None


async def create_postgres_database() -> str:
    """Create an empty database; returns its URL."""
    name = f"clayloop_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres_admin_url())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = postgres_admin_url().rpartition("/")
    return f"{base}/{name}"


async def drop_postgres_database(url: str) -> None:
    """Drop a database made by :func:`create_postgres_database`."""
    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(postgres_admin_url())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def sqlite_url(directory: Path) -> str:
    """A SQLite URL for a new file in ``directory``."""
    return f"sqlite:///{directory / 'clayloop-test.db'}"
