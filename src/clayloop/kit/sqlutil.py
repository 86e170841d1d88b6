"""Small SQL helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


async def insert_ignore(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT rows, silently keeping any that already exist (ON CONFLICT DO NOTHING)."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    await conn.execute(dialect.insert(table).on_conflict_do_nothing(), rows)


def locks(conn: AsyncConnection) -> bool:
    """Whether SELECT … FOR UPDATE means anything here (SQLite serializes writers instead)."""
    return conn.dialect.name == "postgresql"
