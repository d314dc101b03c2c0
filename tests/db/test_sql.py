"""`Insert`: many rows in one call, as multi-row statements on SQLite and an executemany on
PostgreSQL, store exactly what one row at a time would, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.engine import create_engine
from app.db.sql import ROWS_PER_STATEMENT, Insert, _statement_sizes

# Statement boundaries: none, one row, one short of a statement, a statement, and past it.
COUNTS = [0, 1, ROWS_PER_STATEMENT - 1, ROWS_PER_STATEMENT, 2 * ROWS_PER_STATEMENT + 7]


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[AsyncConnection]:
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "CREATE TEMPORARY TABLE scratch (k INTEGER PRIMARY KEY, name TEXT, data BYTEA)"
            if engine.dialect.name == "postgresql"
            else "CREATE TEMPORARY TABLE scratch (k INTEGER PRIMARY KEY, name TEXT, data BLOB)"
        )
        yield conn
    await engine.dispose()


def _insert(conn: AsyncConnection, conflict: tuple[str, ...] = (), update: bool = False) -> Insert:
    dialect = conn.dialect
    columns = ("k", "name", "data")
    return Insert(
        "scratch", columns, dialect.name, dialect.paramstyle, conflict=conflict, update=update
    )


async def _rows(conn: AsyncConnection) -> list[tuple[object, ...]]:
    result = await conn.exec_driver_sql("SELECT k, name, data FROM scratch ORDER BY k")
    return [(k, name, bytes(data) if data is not None else None) for k, name, data in result]


@pytest.mark.parametrize("count", COUNTS)
async def test_every_row_is_stored_with_its_values(conn: AsyncConnection, count: int) -> None:
    rows = [(k, f"row {k}" if k % 3 else None, bytes([k % 256]) * (k % 5)) for k in range(count)]
    await _insert(conn).run(conn, rows)
    assert await _rows(conn) == rows


async def test_a_conflict_does_nothing_or_updates_as_one_row_at_a_time_would(
    conn: AsyncConnection,
) -> None:
    first = [(k, "first", b"1") for k in range(ROWS_PER_STATEMENT + 10)]
    await _insert(conn).run(conn, first)
    # Half the keys again, crossing a statement boundary.
    again = [(k, "again", b"2") for k in range(ROWS_PER_STATEMENT // 2, ROWS_PER_STATEMENT + 20)]
    await _insert(conn, conflict=("k",)).run(conn, again)
    assert await _rows(conn) == [
        *first,
        *[(k, "again", b"2") for k in range(ROWS_PER_STATEMENT + 10, ROWS_PER_STATEMENT + 20)],
    ]
    await _insert(conn, conflict=("k",), update=True).run(conn, again)
    expected = {row[0]: row for row in first} | {row[0]: row for row in again}
    assert await _rows(conn) == sorted(expected.values())


async def test_a_refused_row_stores_none_of_its_statement(conn: AsyncConnection) -> None:
    rows = [(k, "x", b"") for k in range(10)] + [(3, "twice", b"")]
    with pytest.raises(IntegrityError):
        async with conn.begin_nested():
            await _insert(conn).run(conn, rows)
    assert await _rows(conn) == []


@given(st.integers(min_value=0, max_value=100_000))
def test_any_number_of_rows_takes_few_shapes_of_statement(count: int) -> None:
    sizes = _statement_sizes(count, ROWS_PER_STATEMENT)
    assert sum(sizes) == count
    assert all(0 < size <= ROWS_PER_STATEMENT for size in sizes)
    # Whatever the count: a full statement, and at most one of each power of two below it.
    assert len(sizes) - sizes.count(ROWS_PER_STATEMENT) <= ROWS_PER_STATEMENT.bit_length()
    assert len({*sizes} - {ROWS_PER_STATEMENT}) == len(sizes) - sizes.count(ROWS_PER_STATEMENT)
    assert all(size & (size - 1) == 0 for size in sizes if size != ROWS_PER_STATEMENT)
