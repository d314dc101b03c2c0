"""Plain SQL for the bulk paths, in the driver's own parameter style.

SQLAlchemy's per-value processing of executemany parameters costs more than the insert
itself on the ingest path, so bulk writes go straight to the driver; so do the bulk reads
of reconciliation, where building a Row per result row cost more than the query. `ON
CONFLICT` is the same syntax on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection


def placeholder(paramstyle: str, position: int) -> str:
    """`?` or `$<position>` (counted from 1) or `%s` for the driver's paramstyle."""
    if paramstyle == "qmark":
        return "?"
    if paramstyle == "numeric_dollar":
        return f"${position}"
    if paramstyle == "format":
        return "%s"
    raise ValueError(f"unsupported DB-API paramstyle {paramstyle!r}")


def placeholders(paramstyle: str, count: int, first: int = 1) -> str:
    """`?, ?, ?` or `$1, $2, $3` or `%s, %s, %s` for the driver's paramstyle; numbered
    from `first` where the style numbers them."""
    return ", ".join(placeholder(paramstyle, i) for i in range(first, first + count))


async def fetch_tuples(
    conn: AsyncConnection, sql: str, parameters: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """Every row of a query in the driver's paramstyle, as plain tuples."""
    if conn.dialect.driver == "aiosqlite":
        # One hop to aiosqlite's thread for the whole result, and sqlite3's own tuples: no
        # cursor adapter and no Row objects in between.
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        return list(await driver.execute_fetchall(sql, tuple(parameters)))
    result = await conn.exec_driver_sql(sql, tuple(parameters))
    return [tuple(row) for row in result]


def insert_sql(
    table: str,
    columns: Sequence[str],
    paramstyle: str,
    *,
    conflict: Sequence[str] = (),
    update: bool = False,
) -> str:
    """INSERT of `columns`; on a conflict over `conflict`, nothing, or (`update`) the new
    values replace the old ones."""
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({placeholders(paramstyle, len(columns))})"
    )
    if conflict:
        sql += f" ON CONFLICT ({', '.join(conflict)}) DO "
        changed = [c for c in columns if c not in conflict]
        if update and changed:
            sql += "UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in changed)
        else:
            sql += "NOTHING"
    return sql
