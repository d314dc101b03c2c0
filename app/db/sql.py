"""Plain SQL for the bulk paths, in the driver's own parameter style.

SQLAlchemy's per-value processing of executemany parameters costs more than the insert
itself on the ingest path, so bulk writes go straight to the driver; so do the bulk reads
of reconciliation, where building a Row per result row cost more than the query. `ON
CONFLICT` is the same syntax on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

# The most values SQLite binds in one statement (SQLITE_MAX_VARIABLE_NUMBER; 999 before 3.32).
SQLITE_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
# Rows in one multi-row INSERT on SQLite (bench/README.md, "Eighth round").
ROWS_PER_STATEMENT = 500


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


class Insert:
    """One INSERT for many rows at once, in the driver's own paramstyle (`insert_sql`).

    On SQLite the rows go as multi-row VALUES statements of up to ROWS_PER_STATEMENT rows
    rather than one executemany: sqlite3 lets go of Python's GIL for every row it steps and
    must take it back for the next, so a database thread inserting beside an event loop
    that parses waited for the GIL once a row (bench/README.md, "Eighth round"). One
    statement binds all its values at once and then steps without the GIL. PostgreSQL's
    driver pipelines an executemany on the event loop itself, so it keeps that.
    """

    def __init__(
        self,
        table: str,
        columns: Sequence[str],
        dialect_name: str,
        paramstyle: str,
        *,
        conflict: Sequence[str] = (),
        update: bool = False,
    ) -> None:
        self._one = insert_sql(table, columns, paramstyle, conflict=conflict, update=update)
        self._multirow = dialect_name == "sqlite"
        head, values, tail = self._one.partition(
            f" VALUES ({placeholders(paramstyle, len(columns))})"
        )
        self._head = head + " VALUES "
        self._row = values.removeprefix(" VALUES ")
        self._tail = tail
        self._per = max(1, min(ROWS_PER_STATEMENT, SQLITE_VARIABLES // len(columns)))
        self._statements: dict[int, str] = {}

    @property
    def sql(self) -> str:
        """The statement for one row."""
        return self._one

    async def run(self, conn: AsyncConnection, rows: Sequence[Sequence[Any]]) -> None:
        """Insert `rows` (each in the columns' order) in `conn`'s transaction."""
        if not rows:
            return
        if not self._multirow:
            await conn.exec_driver_sql(self._one, rows)
            return
        start = 0
        for count in _statement_sizes(len(rows), self._per):
            part = rows[start : start + count]
            start += count
            await conn.exec_driver_sql(self._statement(count), tuple(chain.from_iterable(part)))

    def _statement(self, count: int) -> str:
        sql = self._statements.get(count)
        if sql is None:
            sql = self._statements[count] = self._head + ", ".join([self._row] * count) + self._tail
        return sql


def _statement_sizes(count: int, per: int) -> list[int]:
    """`count` rows as statements of `per` rows, the rest in powers of two: a few shapes of
    statement, each prepared once in sqlite3's cache, whatever the number of rows (a 500-row
    statement's program is hundreds of KiB, and the cache keeps 128)."""
    sizes = [per] * (count // per)
    rest = count % per
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes
