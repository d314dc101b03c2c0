"""Which failures the batch writer takes for a refusal of the rows (isolate them) and which for
a failing database (retry): real errors from real databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db.engine import create_engine
from app.ingest.writer import refused
from tests.conftest import POSTGRES_URL, postgres_available


async def error_of(url: str, *statements: str, params: tuple[object, ...] = ()) -> Exception:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements[:-1]:
                await conn.execute(text(statement))
            await conn.exec_driver_sql(statements[-1], params)
    except Exception as exc:
        return exc
    finally:
        await engine.dispose()
    raise AssertionError("no error")


postgres = pytest.mark.skipif(postgres_available() is not None, reason="no PostgreSQL")


@postgres
@pytest.mark.postgres
@pytest.mark.parametrize(
    ("statements", "params"),
    [
        (("CREATE TEMP TABLE t (v varchar(2))", "INSERT INTO t VALUES ('xyz')"), ()),
        (("CREATE TEMP TABLE t (v int CHECK (v > 0))", "INSERT INTO t VALUES (-1)"), ()),
        (("SELECT $1::int",), (2**40,)),  # refused by the driver before it is sent
        (("SELECT convert_from('\\x00'::bytea, 'UTF8')",), ()),
    ],
)
async def test_postgresql_refusing_a_value_is_a_refusal(
    statements: tuple[str, ...], params: tuple[object, ...]
) -> None:
    assert refused(await error_of(POSTGRES_URL, *statements, params=params))


@postgres
@pytest.mark.postgres
async def test_an_unreachable_postgresql_is_a_failure() -> None:
    url = POSTGRES_URL.replace("127.0.0.1:5432", "127.0.0.1:1")
    assert not refused(await error_of(url, "SELECT 1"))


async def test_a_read_only_sqlite_file_is_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
    url = f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"
    assert not refused(await error_of(url, "INSERT INTO t VALUES ('x')"))


async def test_a_sqlite_constraint_is_a_refusal(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    exc = await error_of(
        url, "CREATE TABLE t (v INTEGER CHECK (v > 0))", "INSERT INTO t VALUES (-1)"
    )
    assert refused(exc)
