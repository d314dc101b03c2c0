"""The geometry of a run's timeline: syslog CDRs above the axis and MN records below it,
per hour of call start, with the restore gaps (by call end) as bands; drawn as inline SVG
by run.html."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.reconcile.service import Density
from app.times import to_time, to_us

WIDTH = 1000.0  # the SVG's user units
HALF = 80.0  # the height of each side's bars at the busiest bucket
AXIS_Y = 20.0 + HALF  # room for the top label
HEIGHT = AXIS_Y + HALF + 40.0  # room for the tick labels
TICKS = 6


@dataclass(frozen=True, slots=True)
class Bar:
    """One bucket's bar: `y`/`height` in user units, and what it counts, for its tooltip."""

    x: float
    width: float
    y: float
    height: float
    label: str


@dataclass(frozen=True, slots=True)
class Band:
    """A restore gap across the chart."""

    x: float
    width: float
    label: str


@dataclass(frozen=True, slots=True)
class Tick:
    """A time mark on the axis."""

    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Timeline:
    """Everything run.html draws, in user units of a WIDTH x HEIGHT viewBox."""

    width: float
    height: float
    axis_y: float
    syslog: list[Bar]
    mn: list[Bar]
    gaps: list[Band]
    ticks: list[Tick]
    busiest: int
    bucket_hours: int
    description: str  # what the picture shows, in words, for screen readers


def _x(moment_us: int, from_us: int, span_us: int) -> float:
    return round(WIDTH * (moment_us - from_us) / span_us, 2)


def _hour(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _ticks(from_us: int, until_us: int) -> list[Tick]:
    """About TICKS marks on whole hours (whole days when the window is long)."""
    span_us = until_us - from_us
    hours = max(1, span_us // (3600 * 1_000_000))
    step_hours = max(1, -(-hours // TICKS))
    if step_hours >= 24:
        step_hours = 24 * -(-step_hours // 24)
    step = timedelta(hours=step_hours)
    start = to_time(from_us)
    assert start is not None
    moment = start.replace(minute=0, second=0, microsecond=0)
    if step >= timedelta(days=1):
        moment = moment.replace(hour=0)
    ticks = []
    while True:
        if moment >= start:
            at = to_us(moment)
            assert at is not None
            if at >= until_us:
                break
            label = moment.strftime("%Y-%m-%d") if step >= timedelta(days=1) else _hour(moment)
            ticks.append(Tick(_x(at, from_us, span_us), label))
        moment += step
    return ticks


def timeline(density: Density, until_us: int, gaps: list[tuple[int, int, int]]) -> Timeline:
    """The chart of `density` up to `until_us`, with each gap (first lost, last lost, count)."""
    from_us = density.from_us
    span_us = max(1, until_us - from_us)
    busiest = max([1, *density.syslog, *density.mn])
    width = WIDTH * density.bucket_us / span_us
    hours = density.bucket_us // (3600 * 1_000_000)

    def bars(counts: list[int], what: str, up: bool) -> list[Bar]:
        drawn = []
        for i, n in enumerate(counts):
            if not n:
                continue
            start = from_us + i * density.bucket_us
            height = round(max(1.0, HALF * n / busiest), 2)
            moment = to_time(start)
            assert moment is not None
            drawn.append(
                Bar(
                    x=_x(start, from_us, span_us),
                    width=round(max(width - 0.5, 0.5), 2),
                    y=AXIS_Y - height if up else AXIS_Y,
                    height=height,
                    label=f"{_hour(moment)} UTC: {n:,} {what}",
                )
            )
        return drawn

    bands = []
    for first, last, count in gaps:
        x = _x(max(first, from_us), from_us, span_us)
        right = _x(min(max(last, first), until_us), from_us, span_us)
        shown_first, shown_last = to_time(first), to_time(last)
        assert shown_first is not None and shown_last is not None
        bands.append(
            Band(
                x=x,
                width=round(max(right - x, 3.0), 2),
                label=f"restore gap: {count:,} records lost, ending "
                f"{_hour(shown_first)} to {_hour(shown_last)} UTC",
            )
        )
    described = (
        f"Syslog CDRs (above the line) and MN records (below it) per "
        f"{'hour' if hours == 1 else f'{hours} hours'} of call start"
    )
    if bands:
        described += "; " + "; ".join(band.label for band in bands)
    return Timeline(
        width=WIDTH,
        height=HEIGHT,
        axis_y=AXIS_Y,
        syslog=bars(density.syslog, "syslog CDRs", up=True),
        mn=bars(density.mn, "MN records", up=False),
        gaps=bands,
        ticks=_ticks(from_us, until_us),
        busiest=busiest,
        bucket_hours=hours,
        description=described + ".",
    )
