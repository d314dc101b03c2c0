"""The maintained row counts: equal to COUNT(*) after every kind of write, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cdr import deriving
from app.db import counts
from app.db.engine import create_engine
from app.db.models import cdrs, events, messages, mn_participants
from app.history.service import import_document
from app.ingest.origin import Origin
from app.ingest.stats import get_stats
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from parsers.framing import Frame
from tests.cdr.scenario import LINES
from tests.conftest import cdrecon

TABLES = {"messages": messages, "events": events, "cdrs": cdrs, "mn_participants": mn_participants}
HISTORY = Path(__file__).parent.parent / "fixtures" / "history"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def scanned(engine: AsyncEngine) -> dict[str, int]:
    """COUNT(*) of every counted table."""
    async with engine.connect() as conn:
        return {
            name: int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
            for name, table in TABLES.items()
        }


async def maintained(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return await counts.read(conn)


async def ingest(engine: AsyncEngine, frames: list[bytes], origin: Origin, **options: int) -> None:
    writer = BatchWriter(engine, Metrics(), batch_size=7, linger=0, **options)
    writer.start()
    for start in range(0, len(frames), 7):
        writer.submit(origin, [Frame(f) for f in frames[start : start + 7]])
        await writer.wait_for_room()
    await writer.stop()


async def test_counts_equal_count_star_after_ingest_rebuild_and_history_import(
    engine: AsyncEngine,
) -> None:
    live = [line.rfc5424() for line in LINES]
    await ingest(engine, live, Origin("tcp", "10.0.1.11", 5000))
    assert (await maintained(engine))["cdrs"] > 0
    assert await maintained(engine) == await scanned(engine)
    # Deferred, then caught up; then the same bodies from a file (duplicate events), twice
    # (the second time every line is a duplicate message).
    await ingest(engine, live[::-1], Origin("tcp", "10.0.1.12", 5000), defer_backlog=-1)
    file_lines = [line.rsyslog().encode() for line in LINES]
    for _ in range(2):
        await ingest(engine, file_lines, Origin("file", source="/var/log/pexip.log"))
    assert await maintained(engine) == await scanned(engine)

    await deriving.rebuild(engine, chunk=5)
    assert await maintained(engine) == await scanned(engine)

    for _ in range(2):  # the second import replaces every record
        for name in (
            "history_participant_object.mividas-fixture.json",
            "participants.export-csv.csv",
        ):
            async with engine.begin() as conn:
                await import_document(conn, (HISTORY / name).read_bytes(), name)
    found = await scanned(engine)
    assert found["mn_participants"] > 0
    assert await maintained(engine) == found


async def test_two_writers_at_once_count_every_row(database_url: str) -> None:
    engines = [create_engine(database_url), create_engine(database_url)]
    try:
        frames = [line.rfc5424() for line in LINES]
        await asyncio.gather(
            ingest(engines[0], frames[::2], Origin("tcp", "a", 1)),
            ingest(engines[1], frames[1::2], Origin("tcp", "b", 1)),
        )
        assert await maintained(engines[0]) == await scanned(engines[0])
    finally:
        for engine in engines:
            await engine.dispose()


async def test_stats_read_the_maintained_counts_and_recount_repairs_them(
    engine: AsyncEngine,
) -> None:
    await ingest(engine, [line.rfc5424() for line in LINES], Origin("tcp", "h", 1))
    true = await scanned(engine)
    async with engine.begin() as conn:
        await counts.adjust(conn, "messages", 1000)
    async with engine.connect() as conn:
        assert (await get_stats(conn, 0)).messages == true["messages"] + 1000
    async with engine.begin() as conn:
        before = await counts.recount(conn)
    assert before["messages"] == true["messages"] + 1000
    assert await maintained(engine) == true
    async with engine.connect() as conn:
        stats = await get_stats(conn, 0)
    assert (stats.messages, stats.events, stats.cdrs) == (
        true["messages"],
        true["events"],
        true["cdrs"],
    )


@pytest.mark.postgres
async def test_postgres_writers_add_to_rows_of_their_own_and_fold_gathers_ended_ones(
    postgres_database: str,
) -> None:
    engine = create_engine(postgres_database)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM row_counts"))
            await conn.execute(
                text("INSERT INTO row_counts (table_name, slot, n) VALUES ('events', 999999, 5)")
            )
            await counts.adjust(conn, "events", 2)
            await counts.adjust(conn, "events", 3)
        async with engine.begin() as conn:
            assert (await counts.read(conn))["events"] == 10
            slots = (await conn.execute(text("SELECT count(*) FROM row_counts"))).scalar_one()
            assert slots == 2  # one for the ended process, one for this one
            await counts.fold(conn)
        async with engine.connect() as conn:
            assert (await counts.read(conn))["events"] == 10
            rows = (await conn.execute(text("SELECT slot, n FROM row_counts"))).all()
        assert (0, 5) in [tuple(row) for row in rows]  # the ended process's count, gathered
        assert 999999 not in [row[0] for row in rows]
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM row_counts"))
        await engine.dispose()


def test_the_recount_command_repairs_a_count_and_says_what_it_was(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'counts.db'}"
    lines = b"".join(line.rsyslog().encode() + b"\n" for line in LINES)
    assert cdrecon(url, "import-syslog", "-", stdin=lines).returncode == 0

    async def spoil() -> dict[str, int]:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await counts.adjust(conn, "cdrs", 7)
            return await scanned(engine)
        finally:
            await engine.dispose()

    true = asyncio.run(spoil())
    done = cdrecon(url, "db", "recount")
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode().splitlines()
    assert f"cdrs {true['cdrs']} (was {true['cdrs'] + 7})" in out
    assert f"messages {true['messages']}" in out
