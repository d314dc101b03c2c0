"""The traffic chart: the day's window, steps, compact SVG paths, and the database's sums
of the per-minute counts (on both databases)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from app.db.engine import create_engine
from app.db.models import node_minutes
from app.web.traffic import (
    BUCKET_MINUTES,
    BUCKETS,
    HEIGHT,
    NodeTraffic,
    load_traffic,
    node_traffic,
    paths,
    rates,
    window,
)

MINUTE = 60_000_000
NOW = datetime(2026, 11, 26, 12, 0, 30, tzinfo=UTC)


def test_the_window_is_the_day_up_to_the_end_of_the_current_minute() -> None:
    start, end = window(NOW)
    assert end == int(datetime(2026, 11, 26, 12, 1, tzinfo=UTC).timestamp()) * 1_000_000
    assert end - start == 24 * 60 * MINUTE == BUCKETS * BUCKET_MINUTES * MINUTE


def test_steps_are_per_minute_rates_of_the_day() -> None:
    values = rates([(-1, 1000), (0, 10), (0, 5), (BUCKETS - 1, 50), (BUCKETS, 1000)])
    assert len(values) == BUCKETS
    assert values[0] == 15 / BUCKET_MINUTES
    assert values[-1] == 50 / BUCKET_MINUTES
    assert sum(values) == (15 + 50) / BUCKET_MINUTES


def test_a_quiet_day_draws_in_a_few_bytes_and_runs_are_merged() -> None:
    area, line = paths([0.0] * BUCKETS)
    assert line == f"M0,{HEIGHT}H{BUCKETS}"
    assert area == f"M0,{HEIGHT}V{HEIGHT}H{BUCKETS}V{HEIGHT}Z"
    area, line = paths([0.0, 0.0, 4.0, 4.0, 2.0])
    assert line == f"M0,{HEIGHT}H2V2H4V21H5"  # the peak at the top margin, half at mid-height
    assert area.startswith(f"M0,{HEIGHT}V{HEIGHT}H2") and area.endswith(f"V{HEIGHT}Z")


def test_a_node_has_its_day_total_peak_and_last_hour() -> None:
    traffic = node_traffic("conf-1", [(0, 600), (BUCKETS - 1, 120)])
    assert traffic.total == 720
    assert traffic.peak == 600 / BUCKET_MINUTES
    assert traffic.last_hour == 120 / 60
    assert traffic.area and traffic.line


async def test_the_database_sums_the_minutes_of_the_day_into_steps(database_url: str) -> None:
    engine = create_engine(database_url)
    start, end = window(NOW)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                node_minutes.insert(),
                [
                    {"minute_us": start - MINUTE, "host": "a", "messages": 1000},  # the day before
                    {"minute_us": start, "host": "a", "messages": 10},
                    {
                        "minute_us": start + (BUCKET_MINUTES - 1) * MINUTE,
                        "host": "a",
                        "messages": 5,
                    },
                    {"minute_us": start + BUCKET_MINUTES * MINUTE, "host": "a", "messages": 7},
                    {"minute_us": end - MINUTE, "host": "b", "messages": 50},
                ],
            )
        async with engine.connect() as conn:
            [a, b, unknown] = await load_traffic(conn, ["a", "b", "c"], NOW)
    finally:
        await engine.dispose()
    assert rates_of(a) == {0: 15, 1: 7}
    assert rates_of(b) == {BUCKETS - 1: 50}
    assert (a.total, b.total, unknown.total) == (22, 50, 0)


def rates_of(traffic: NodeTraffic) -> dict[int, int]:
    """The chart's steps with messages, back from its line path (per-minute rate x step)."""
    steps: dict[int, int] = {}
    x, y = 0, HEIGHT
    peak = traffic.peak
    for command in re.findall(r"[MHV][^MHV]+", traffic.line):
        if command[0] == "M":
            y = float(command[1:].split(",")[1])
        elif command[0] == "V":
            y = float(command[1:])
        else:
            end = int(command[1:])
            if y < HEIGHT:
                rate = (HEIGHT - y) / (HEIGHT - 2) * peak
                for step in range(x, end):
                    steps[step] = round(rate * BUCKET_MINUTES)
            x = end
    return steps
