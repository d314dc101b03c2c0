"""The run timeline's geometry: bars scale to the busiest hour, gaps become bands where
they happened, and long windows are drawn in wider buckets."""

from __future__ import annotations

from datetime import UTC, datetime

from app.reconcile.service import HOUR_US, Density
from app.times import to_us
from app.web.timeline import AXIS_Y, HALF, WIDTH, timeline

FROM = to_us(datetime(2026, 11, 20, tzinfo=UTC))
assert FROM is not None


def test_bars_scale_to_the_busiest_hour_syslog_up_and_mn_down() -> None:
    density = Density(FROM, HOUR_US, syslog=[4, 0, 8, 2], mn=[4, 0, 0, 2])
    drawn = timeline(density, FROM + 4 * HOUR_US, [])
    assert drawn.busiest == 8
    assert [(b.x, b.height) for b in drawn.syslog] == [(0, HALF / 2), (500, HALF), (750, HALF / 4)]
    assert all(b.y + b.height == AXIS_Y for b in drawn.syslog)  # standing on the axis
    assert [(b.x, b.y) for b in drawn.mn] == [(0, AXIS_Y), (750, AXIS_Y)]  # hanging below
    assert drawn.syslog[1].label == "2026-11-20 02:00 UTC: 8 syslog CDRs"
    assert not drawn.gaps


def test_a_gap_is_a_band_from_its_first_to_its_last_lost_record() -> None:
    density = Density(FROM, HOUR_US, syslog=[1] * 10, mn=[1] * 3 + [0] * 4 + [1] * 3)
    gap = (FROM + 3 * HOUR_US, FROM + 7 * HOUR_US - 1, 40)
    [band] = timeline(density, FROM + 10 * HOUR_US, [gap]).gaps
    assert (band.x, round(band.x + band.width)) == (300, 700)
    assert "40 records lost" in band.label and "2026-11-20 03:00" in band.label
    # A gap of one instant is still visible.
    [thin] = timeline(density, FROM + 10 * HOUR_US, [(gap[0], gap[0], 1)]).gaps
    assert thin.width >= 3


def test_long_windows_use_wider_buckets_and_daily_ticks() -> None:
    days = 60
    density = Density(FROM, 2 * HOUR_US, syslog=[1] * (days * 12), mn=[])
    drawn = timeline(density, FROM + days * 24 * HOUR_US, [])
    assert drawn.bucket_hours == 2 and "per 2 hours" in drawn.description
    assert all(tick.label.count("-") == 2 and ":" not in tick.label for tick in drawn.ticks)
    assert 3 <= len(drawn.ticks) <= 7
    assert all(0 <= tick.x < WIDTH for tick in drawn.ticks)
