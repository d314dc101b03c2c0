"""The traffic chart's pure parts: the day's window, steps, and compact SVG paths."""

from __future__ import annotations

from datetime import UTC, datetime

from app.web.traffic import BUCKET_MINUTES, BUCKETS, HEIGHT, node_traffic, paths, rates, window

MINUTE = 60_000_000
NOW = datetime(2026, 11, 26, 12, 0, 30, tzinfo=UTC)


def test_the_window_is_the_day_up_to_the_end_of_the_current_minute() -> None:
    start, end = window(NOW)
    assert end == int(datetime(2026, 11, 26, 12, 1, tzinfo=UTC).timestamp()) * 1_000_000
    assert end - start == 24 * 60 * MINUTE == BUCKETS * BUCKET_MINUTES * MINUTE


def test_minutes_fall_into_their_step_as_a_per_minute_rate() -> None:
    start, end = window(NOW)
    values = rates(
        [
            (start - MINUTE, 1000),  # before the day: left out
            (start, 10),
            (start + (BUCKET_MINUTES - 1) * MINUTE, 5),  # same first step
            (end - MINUTE, 50),  # the current minute, in the last step
            (end, 1000),  # after: left out
        ],
        start,
    )
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
    start, end = window(NOW)
    traffic = node_traffic("conf-1", [(start, 600), (end - MINUTE, 120)], start)
    assert traffic.total == 720
    assert traffic.peak == 600 / BUCKET_MINUTES
    assert traffic.last_hour == 120 / 60
    assert traffic.area and traffic.line
