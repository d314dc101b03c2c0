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


async def test_events_stored_before_0008_keep_their_links_and_legs(database_url: str) -> None:
    """0008 drops the links that only repeat an event's own message; 0011 lists each CDR's
    messages from its events."""
    from alembic import command
    from sqlalchemy import text

    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0007")
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            for message_id, digest, pid in ((5, b"a" * 16, "leg"), (9, b"b" * 16, "leg")):
                await conn.execute(
                    text(
                        "INSERT INTO events (digest, time_us, participant_id, fields, truncated,"
                        " message_id) VALUES (:d, :t, :p, '{}', false, :m)"
                    ),
                    {"d": digest, "t": message_id, "p": pid, "m": message_id},
                )
                await conn.execute(
                    text("INSERT INTO event_messages (digest, message_id) VALUES (:d, :m)"),
                    {"d": digest, "m": message_id},
                )
            # The same event seen again in message 12.
            await conn.execute(
                text("INSERT INTO event_messages (digest, message_id) VALUES (:d, 12)"),
                {"d": b"a" * 16},
            )
            await conn.execute(
                text(
                    "INSERT INTO cdrs (id, first_seen_us, state, event_count) "
                    "VALUES ('leg', 5, 'closed', 2)"
                )
            )
        await asyncio.to_thread(upgrade, database_url)
        async with engine.connect() as conn:
            links = (await conn.execute(text("SELECT message_id FROM event_messages"))).all()
            ids = (await conn.execute(text("SELECT message_ids FROM cdrs"))).scalar_one()
    finally:
        await engine.dispose()
    assert (links, ids) == ([(12,)], "5,9")


async def test_lines_imported_before_0012_are_still_recognised(database_url: str) -> None:
    """0012 rewrites the key of each backfilled line as the importer now makes it, so a file
    imported before the upgrade adds nothing when it is imported again; the downgrade puts
    the old keys back."""
    import hashlib

    from alembic import command
    from sqlalchemy import text

    from app.ingest.prepare import line_digest

    lines = [b"2026-11-26T10:00:00.090+00:00 conf-node-01 pexip: line %d" % i for i in range(3)]
    old_keys = [hashlib.blake2b(line, digest_size=16).digest() for line in lines]
    config = alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, "0011")
    engine = create_async_engine(database_url)

    async def keys() -> list[bytes]:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT digest FROM messages ORDER BY id"))
            return [bytes(d) for d in rows.scalars()]

    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO messages (received_us, transport, format, msg_offset, truncated,"
                    " raw, source, digest) VALUES (1, 'file', 'raw', 0, false, :raw, 'f', :key)"
                ),
                [{"raw": line, "key": key} for line, key in zip(lines, old_keys, strict=True)],
            )
        await asyncio.to_thread(upgrade, database_url)
        assert await keys() == [line_digest(line) for line in lines]
        await asyncio.to_thread(command.downgrade, config, "0011")
        assert await keys() == old_keys
        await asyncio.to_thread(upgrade, database_url)
    finally:
        await engine.dispose()
