"""The batch writer against real databases: what goes in comes out, once, with its origin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.db.models import messages, node_minutes, nodes
from app.db.packing import unpack
from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from parsers.framing import Frame


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


class FakeReader:
    """Stands in for an asyncio transport's pause/resume switch."""

    def __init__(self) -> None:
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return False


async def test_frames_are_stored_with_origin_and_parsed_header(engine: AsyncEngine) -> None:
    metrics = Metrics()
    writer = BatchWriter(engine, metrics, batch_size=10, linger=0)
    writer.start()
    origin = Origin("tls", "10.0.0.5", 40000, "CN=conf-1")
    writer.submit(
        origin,
        [
            Frame(b"<134>1 2026-11-26T10:00:00.250Z conf-1 pexip 42 ADM - hello"),
            Frame(b"not syslog \xff", error=None),
            Frame(b"<14>1 - - - - - - cut", truncated=True),
        ],
        received_us=1_795_687_200_000_000,
    )
    await writer.stop()
    async with engine.connect() as conn:
        stored = (await conn.execute(select(messages).order_by(messages.c.id))).mappings().all()
        node_rows = {r["host"]: r for r in (await conn.execute(select(nodes))).mappings()}
    assert [r["format"] for r in stored] == ["rfc5424", "raw", "rfc5424"]
    first = stored[0]
    assert (first["transport"], first["peer_host"], first["peer_port"], first["tls_subject"]) == (
        "tls",
        "10.0.0.5",
        40000,
        "CN=conf-1",
    )
    assert first["hostname"] == "conf-1"
    # Of the header, only what is read is kept: the frame holds the rest.
    assert not {"app_name", "procid", "msgid", "timestamp_us"} & set(first)
    assert first["received_us"] == 1_795_687_200_000_000
    raws = [unpack(bytes(row["raw"]), row["packed"]) for row in stored]
    assert raws[0][first["msg_offset"] :] == b"hello"
    assert stored[1]["error"] and raws[1] == b"not syslog \xff"
    assert stored[2]["truncated"] is True or stored[2]["truncated"] == 1
    assert node_rows["conf-1"]["messages"] == 1
    assert node_rows["10.0.0.5"]["parse_failures"] == 1
    assert metrics.stored.labels("tls")._value.get() == 3
    assert metrics.parse_failures.labels("tls")._value.get() == 1


async def test_node_counters_accumulate_across_batches(engine: AsyncEngine) -> None:
    writer = BatchWriter(engine, Metrics(), batch_size=2, linger=0)
    writer.start()
    origin = Origin("tcp", "10.0.0.9", 1)
    for second in range(5):
        frame = Frame(b"<134>1 2026-11-26T10:00:0%dZ conf-9 pexip - - - m" % second)
        writer.submit(origin, [frame], received_us=1_000_000 * (second + 1))
    await writer.stop()
    async with engine.connect() as conn:
        [node] = (await conn.execute(select(nodes))).mappings().all()
    assert (node["host"], node["messages"], node["first_seen_us"], node["last_seen_us"]) == (
        "conf-9",
        5,
        1_000_000,
        5_000_000,
    )


async def test_messages_are_counted_per_node_per_minute_of_arrival(engine: AsyncEngine) -> None:
    minute = 60_000_000
    start = 29_000_000 * minute  # a minute's start, in 2025
    writer = BatchWriter(engine, Metrics(), batch_size=1000, linger=0.2)
    writer.start()
    lon, nyc = Origin("tcp", "10.0.0.1", 1), Origin("udp", "10.0.0.2", 2)
    line = b"<134>1 2026-11-26T10:00:00Z %s pexip - - - m"
    # One batch that crosses a minute and comes back to it (a spilled chunk, say), two hosts.
    writer.submit(lon, [Frame(line % b"lon")] * 3, received_us=start + 59_999_999)
    writer.submit(nyc, [Frame(line % b"nyc"), Frame(b"no syslog")], received_us=start + minute)
    writer.submit(lon, [Frame(line % b"lon")] * 2, received_us=start + minute + 1)
    writer.submit(lon, [Frame(line % b"lon")], received_us=start + 10)
    await writer.stop()
    async with engine.connect() as conn:
        rows = (await conn.execute(select(node_minutes))).all()
    assert sorted((int(m), str(h), int(n)) for m, h, n in rows) == [
        (start, "lon", 3 + 1),
        (start + minute, "10.0.0.2", 1),  # no HOSTNAME: the peer, as in `nodes`
        (start + minute, "lon", 2),
        (start + minute, "nyc", 1),
    ]
    # A batch long after: the minutes older than two days are dropped.
    writer = BatchWriter(engine, Metrics(), batch_size=1000, linger=0)
    writer.start()
    later = start + 3 * 24 * 60 * minute
    writer.submit(nyc, [Frame(line % b"nyc")], received_us=later + 5)
    await writer.stop()
    async with engine.connect() as conn:
        rows = (await conn.execute(select(node_minutes))).all()
    assert sorted((int(m), str(h), int(n)) for m, h, n in rows) == [(later, "nyc", 1)]


async def test_the_minutes_of_a_day_add_up_to_the_node_counters(engine: AsyncEngine) -> None:
    minute = 60_000_000
    start = 29_000_000 * minute
    writer = BatchWriter(engine, Metrics(), batch_size=3, linger=0)
    writer.start()
    origin = Origin("tcp", "10.0.0.1", 1)
    for index in range(10):
        frame = Frame(b"<134>1 2026-11-26T10:00:00Z n%d pexip - - - m" % (index % 2))
        writer.submit(origin, [frame] * (index + 1), received_us=start + index * 20_000_000)
    await writer.stop()
    async with engine.connect() as conn:
        rows = (await conn.execute(select(node_minutes))).all()
        counters = {
            r["host"]: r["messages"] for r in (await conn.execute(select(nodes))).mappings()
        }
    per_minute: dict[tuple[int, str], int] = {(int(m), str(h)): int(n) for m, h, n in rows}
    # 20 s apart: indexes 0-2 in the first minute, 3-5 in the second, 6-8, then 9.
    assert per_minute == {
        (start, "n0"): 1 + 3,
        (start, "n1"): 2,
        (start + minute, "n0"): 5,
        (start + minute, "n1"): 4 + 6,
        (start + 2 * minute, "n0"): 7 + 9,
        (start + 2 * minute, "n1"): 8,
        (start + 3 * minute, "n1"): 10,
    }
    for host in ("n0", "n1"):
        assert sum(n for (_, h), n in per_minute.items() if h == host) == counters[host]


async def test_readers_are_paused_over_high_water_and_resumed_after_commit(
    engine: AsyncEngine,
) -> None:
    writer = BatchWriter(engine, Metrics(), batch_size=50, linger=0, high_water=100, low_water=10)
    reader = FakeReader()
    frames = [Frame(b"<14>1 - h a - - - %d" % i) for i in range(150)]
    assert writer.submit(Origin("tcp", "h", 1), frames) is True  # over high water
    writer.hold(reader)
    assert reader.paused
    writer.start()
    await writer.stop()
    assert not reader.paused
    assert writer.pending == 0


async def test_udp_past_the_hard_limit_is_dropped_and_counted(engine: AsyncEngine) -> None:
    metrics = Metrics()
    writer = BatchWriter(engine, metrics, high_water=5, udp_limit=5)
    origin = Origin("udp", "h", 1)
    for i in range(8):
        writer.submit(origin, [Frame(b"<14>1 - h a - - - %d" % i)])
    assert writer.pending == 5
    assert metrics.dropped.labels("udp", "queue_full")._value.get() == 3
    writer.start()
    await writer.stop()
