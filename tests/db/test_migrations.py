"""The Alembic migrations build the schema the code expects, and undo it, on both databases."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.migrate import alembic_config, upgrade
from app.db.models import metadata


async def schema_drift(url: str) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match the models, but
    for the one difference the models declare: on PostgreSQL, whose `messages` is
    partitioned, the digest index is not unique (app/db/models.py)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            drift = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()
    if url.startswith("postgresql"):
        digest = [d for d in drift if d[0] in ("add_index", "remove_index")]
        assert [(kind, index.name, index.unique) for kind, index in digest] == [
            ("remove_index", "ix_messages_digest", False),
            ("add_index", "ix_messages_digest", True),
        ]
        drift = [d for d in drift if d not in digest]
    return drift


async def table_names(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


def test_the_schema_is_the_baseline_and_the_revisions_on_it() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert [r.revision for r in script.walk_revisions()] == ["0002", "0001"]


async def test_migrations_match_the_models_and_downgrade_cleanly(database_url: str) -> None:
    # Tables, columns, types, indexes and constraints: any difference is a drift.
    assert await schema_drift(database_url) == []
    # Alembic's env runs its own event loop, so it goes to a thread here.
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "base")
    assert await table_names(database_url) <= {"alembic_version"}
    await asyncio.to_thread(upgrade, database_url)
    assert await schema_drift(database_url) == []
