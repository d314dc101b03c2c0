"""The Alembic migrations build the schema the code expects, and undo it, on both databases."""

from __future__ import annotations

import asyncio

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.migrate import alembic_config, upgrade
from app.db.models import metadata


async def table_columns(url: str) -> dict[str, set[str]]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        columns = await conn.run_sync(
            lambda sync: {
                name: {c["name"] for c in inspect(sync).get_columns(name)}
                for name in inspect(sync).get_table_names()
            }
        )
    await engine.dispose()
    return columns


async def test_migrations_match_the_models_and_downgrade_cleanly(database_url: str) -> None:
    from alembic import command

    tables = await table_columns(database_url)
    for table in metadata.sorted_tables:
        assert tables[table.name] == {c.name for c in table.columns}, table.name
    # Alembic's env runs its own event loop, so it goes to a thread here.
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "base")
    assert set(await table_columns(database_url)) <= {"alembic_version"}
    await asyncio.to_thread(upgrade, database_url)
    assert {t.name for t in metadata.sorted_tables} <= set(await table_columns(database_url))
