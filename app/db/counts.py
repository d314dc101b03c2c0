"""Row counts of the tables that grow by millions, maintained by whoever inserts or deletes.

Whoever adds or removes rows of a counted table calls `adjust` in the same transaction, so
a count commits (or rolls back) with its rows and reading a total costs a few rows instead
of a scan. On SQLite, which has one writer, each table has one row. On PostgreSQL each
server process (`pg_backend_pid()`) adds to a row of its own, so two writers never wait on
one hot row; `read` sums them, and `fold` gathers the rows of processes that have ended.
`recount` sets the counts from COUNT(*) again (`cdrecon db recount`).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from .sql import fetch_tuples, placeholder

# The counted tables; `read` answers 0 for one with no row yet.
COUNTED = ("messages", "events", "cdrs", "mn_participants")

# The row that holds SQLite's counts and what `fold` gathers on PostgreSQL: no process id.
SHARED_SLOT = 0


async def adjust(conn: AsyncConnection, table: str, delta: int) -> None:
    """Add `delta` (negative for deletes) to the count of `table`, in `conn`'s transaction."""
    if not delta:
        return
    style = conn.dialect.paramstyle
    slot = "pg_backend_pid()" if conn.dialect.name == "postgresql" else str(SHARED_SLOT)
    await conn.exec_driver_sql(
        "INSERT INTO row_counts (table_name, slot, n) "
        f"VALUES ({placeholder(style, 1)}, {slot}, {placeholder(style, 2)}) "
        "ON CONFLICT (table_name, slot) DO UPDATE SET n = row_counts.n + excluded.n",
        (table, delta),
    )


async def read(conn: AsyncConnection) -> dict[str, int]:
    """The row count of every counted table."""
    counts = dict.fromkeys(COUNTED, 0)
    rows = await fetch_tuples(
        conn, "SELECT table_name, sum(n) FROM row_counts GROUP BY table_name", ()
    )
    counts.update((str(table), int(n)) for table, n in rows)
    return counts


async def recount(conn: AsyncConnection, tables: Iterable[str] = COUNTED) -> dict[str, int]:
    """Set the counts of `tables` from COUNT(*) (a repair, or after a table is emptied);
    what each count was before."""
    style = conn.dialect.paramstyle
    before: dict[str, int] = {}
    for table in tables:
        if table not in COUNTED:
            raise ValueError(f"{table!r} is not a counted table")
        if conn.dialect.name == "postgresql":
            # Inserts and deletes wait until this transaction ends: none is counted twice
            # or lost between the COUNT(*) and the new count.
            await conn.exec_driver_sql(f"LOCK TABLE {table} IN SHARE MODE")
        # On SQLite this first write takes the write lock, which does the same.
        was = await conn.exec_driver_sql(
            f"DELETE FROM row_counts WHERE table_name = {placeholder(style, 1)} RETURNING n",
            (table,),
        )
        before[table] = sum(int(n) for (n,) in was.all())
        await conn.exec_driver_sql(
            "INSERT INTO row_counts (table_name, slot, n) "
            f"SELECT {placeholder(style, 1)}, {SHARED_SLOT}, count(*) FROM {table}",
            (table,),
        )
    return before


async def fold(conn: AsyncConnection) -> None:
    """On PostgreSQL, add the rows of server processes that have ended into the shared
    row, so the table stays as small as the number of live writers."""
    if conn.dialect.name != "postgresql":
        return
    await conn.exec_driver_sql(
        "WITH gone AS (DELETE FROM row_counts WHERE slot <> 0 "
        "AND slot NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL) "
        "RETURNING table_name, n) "
        "INSERT INTO row_counts (table_name, slot, n) "
        "SELECT table_name, 0, sum(n) FROM gone GROUP BY table_name "
        "ON CONFLICT (table_name, slot) DO UPDATE SET n = row_counts.n + excluded.n"
    )
