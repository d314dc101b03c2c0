"""The overview's traffic chart: messages per minute per node over the last 24 hours, from
the per-minute counts the batch writer keeps (`node_minutes`), drawn as inline SVG on the
server (no script, nothing fetched)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from app.ingest.rows import MINUTE_US
from app.ingest.stats import traffic_since
from app.times import to_us

SPAN = timedelta(hours=24)
BUCKET_MINUTES = 5  # one step of the chart: 288 across a day, readable from 400 px wide
BUCKETS = int(SPAN.total_seconds() // 60) // BUCKET_MINUTES
HEIGHT = 40  # the SVG's own units; it is stretched to the box the stylesheet gives it
TICKS = (
    "\N{MINUS SIGN}24 h",
    "\N{MINUS SIGN}18 h",
    "\N{MINUS SIGN}12 h",
    "\N{MINUS SIGN}6 h",
    "now",
)


@dataclass(frozen=True, slots=True)
class NodeTraffic:
    """One node's day, ready to draw: the area and line paths, and the figures beside them."""

    host: str
    total: int  # messages in the 24 hours
    peak: float  # the highest per-minute rate of a step
    last_hour: float  # per minute, over the last hour
    area: str  # SVG path data, in a viewBox of BUCKETS x HEIGHT
    line: str


def window(now: datetime) -> tuple[int, int]:
    """[start, end) in µs: the 24 hours up to the end of the current minute, whole steps."""
    now_us = to_us(now)
    assert now_us is not None
    end = now_us - now_us % MINUTE_US + MINUTE_US
    return end - BUCKETS * BUCKET_MINUTES * MINUTE_US, end


def rates(steps: Iterable[tuple[int, int]]) -> list[float]:
    """Messages per minute in each step of the day, from (step, messages) pairs; steps
    outside the day are left out."""
    totals = [0] * BUCKETS
    for index, messages in steps:
        if 0 <= index < BUCKETS:
            totals[index] += messages
    return [total / BUCKET_MINUTES for total in totals]


def _y(rate: float, peak: float) -> str:
    y = HEIGHT if peak <= 0 else HEIGHT - rate / peak * (HEIGHT - 2)
    return f"{y:.1f}".rstrip("0").rstrip(".")


def paths(values: Sequence[float]) -> tuple[str, str]:
    """(area, line) path data of a step chart of `values`, a step per unit of width; runs
    of one value are one segment, so a quiet day is a few bytes."""
    peak = max(values, default=0.0)
    line: list[str] = []
    index = 0
    while index < len(values):
        end = index
        while end + 1 < len(values) and values[end + 1] == values[index]:
            end += 1
        y = _y(values[index], peak)
        line.append(f"M0,{y}" if index == 0 else f"V{y}")
        line.append(f"H{end + 1}")
        index = end + 1
    drawn = "".join(line)
    if not drawn:
        return "", ""
    return f"M0,{HEIGHT}" + "V" + drawn[3:] + f"V{HEIGHT}Z", drawn


def node_traffic(host: str, steps: Iterable[tuple[int, int]]) -> NodeTraffic:
    """One node's chart from its (step, messages) pairs of the day."""
    values = rates(steps)
    area, line = paths(values)
    hour = 60 // BUCKET_MINUTES
    return NodeTraffic(
        host=host,
        total=round(sum(values) * BUCKET_MINUTES),
        peak=max(values, default=0.0),
        last_hour=sum(values[-hour:]) / hour,
        area=area,
        line=line,
    )


async def load_traffic(
    conn: AsyncConnection, hosts: Sequence[str], now: datetime
) -> list[NodeTraffic]:
    """The chart of each of `hosts` (in that order) for the 24 hours up to `now`: the
    database sums at most hosts x 1,440 rows of `node_minutes` into hosts x 288 steps,
    however many messages there are."""
    start, _ = window(now)
    by_host: dict[str, list[tuple[int, int]]] = {host: [] for host in hosts}
    for host, step, messages in await traffic_since(conn, start, BUCKET_MINUTES * MINUTE_US):
        if host in by_host:
            by_host[host].append((step, messages))
    return [node_traffic(host, by_host[host]) for host in hosts]
