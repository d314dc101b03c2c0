"""What a run's page shows: its summary and a page of its records of one status, read
through the same service functions as the API."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncConnection

from app.export.service import batches_holding, lost_per_run
from app.reconcile.matching import Status
from app.reconcile.service import density, get_summary, kept_around_gaps, page_items_with_legs
from app.times import to_us

from .moment import Moment
from .overview import GapRow, hms, run_card, run_url
from .timeline import Timeline, timeline

ITEMS_PER_PAGE = 50  # unless the page is asked for another `limit`


@dataclass(frozen=True, slots=True)
class ItemRow:
    """One record (or matched pair) of a run, as the table shows it."""

    status: str
    conference: str | None
    participant: str | None
    aliases: list[str]
    node: str | None
    start: Moment | None
    end: Moment | None
    duration: str | None  # h:mm:ss
    differences: list[tuple[str, str, str]]  # (field, syslog, MN)
    cdr_id: str | None
    mn_id: str | None
    batch: str | None = None  # the export batch a lost record went out in


@dataclass(frozen=True, slots=True)
class KeptRow:
    """An MN record kept next to a restore gap."""

    id: str
    conference: str | None
    participant: str | None
    start: Moment | None
    end: Moment | None
    duration: str | None


@dataclass(frozen=True, slots=True)
class RunPage:
    """A run's summary and one page of its items."""

    id: int
    created_at: Moment | None
    created_by: str | None
    start: Moment | None
    until: Moment | None
    tolerance_seconds: float | None
    counts: list[tuple[str, int]]  # every status the run lists, missing_in_mn first
    gaps: list[GapRow]
    kept: list[tuple[list[KeptRow], list[KeptRow]]]  # per gap: kept before, kept after
    timeline: Timeline | None  # None when the summary has no window
    exported: int  # lost records already in a batch
    coverage: list[tuple[str, str]] | None  # (what, value), when the summary has coverage
    status_urls: dict[str, str]  # this page filtered to each status
    page_url: str  # unfiltered, first page
    status: str | None  # the filter; None for every status
    limit: int  # records a page
    items: list[ItemRow]
    differences: bool  # whether an item on this page has differing fields
    total: int  # items with the filtered status in the run
    next_url: str | None
    first_url: str | None  # when not on the first page
    json_url: str


def _text(value: Any) -> str:
    if value is None or value == "":
        return "\N{EN DASH}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value)


def coverage_rows(coverage: Any) -> list[tuple[str, str]] | None:
    """A summary's coverage block as (label, value) lines, whatever it holds."""
    if not isinstance(coverage, dict):
        return None if coverage is None else [("coverage", _text(coverage))]
    return [(str(key).replace("_", " "), _text(value)) for key, value in coverage.items()]


def _aliases(participant: str | None, *legs: dict[str, Any] | None) -> list[str]:
    """The legs' aliases, each once, leaving out the one already shown as the participant."""
    seen: list[str] = [participant] if participant else []
    for leg in legs:
        for name in ("remote_alias", "local_alias"):
            alias = (leg or {}).get(name)
            if alias and alias not in seen:
                seen.append(str(alias))
    return seen[1:] if participant else seen


def item_row(item: dict[str, Any]) -> ItemRow:
    """An item of `page_items_with_legs` as a table row; the syslog side first, the MN's
    for a record syslog does not have."""
    cdr: dict[str, Any] | None = item.get("cdr")
    mn: dict[str, Any] | None = item.get("mn")
    leg = cdr or mn or {}
    duration = leg.get("duration")
    differences: dict[str, dict[str, Any]] = item.get("differences") or {}
    participant = leg.get("display_name") or (mn or {}).get("display_name")
    return ItemRow(
        status=str(item["status"]),
        conference=item.get("conference_name"),
        participant=participant,
        aliases=_aliases(participant, cdr, mn),
        node=item.get("node"),
        start=Moment.of(leg.get("start")),
        end=Moment.of(leg.get("end")),
        duration=hms(duration) if isinstance(duration, int) else None,
        differences=[
            (name.replace("_", " "), _text(pair.get("syslog")), _text(pair.get("mn")))
            for name, pair in differences.items()
        ],
        cdr_id=item.get("cdr_id"),
        mn_id=item.get("mn_id"),
    )


class UnknownStatus(ValueError):
    """A filter for a status the run does not list."""


async def load_run_page(
    conn: AsyncConnection,
    run_id: int,
    status: str | None,
    cursor: str | None,
    limit: int = ITEMS_PER_PAGE,
) -> RunPage:
    """Run `run_id`'s summary and the page at `cursor` of its items of `status` (all when
    None). RunNotFound, UnknownStatus and InvalidCursor for what cannot be shown."""
    custom = limit if limit != ITEMS_PER_PAGE else None  # kept in the page's links
    summary = await get_summary(conn, run_id)
    card = run_card(summary)
    counts = [(Status.MISSING_IN_MN.value, card.missing_in_mn), *card.counts]
    if status is not None and status not in dict(counts):
        raise UnknownStatus(status)
    items, next_cursor = await page_items_with_legs(conn, run_id, status, cursor, limit)
    rows = [item_row(item) for item in items]
    lost = [row.cdr_id for row in rows if row.status == Status.MISSING_IN_MN and row.cdr_id]
    held = await batches_holding(conn, lost)
    rows = [replace(row, batch=held.get(row.cdr_id or "")) for row in rows]
    _, exported = (await lost_per_run(conn, [run_id])).get(run_id, (0, 0))
    drawn = None
    start_us, until_us = _us(summary.get("from")), _us(summary.get("until"))
    # The timeline heads the run's first page; later pages are for reading records.
    if cursor is None and start_us is not None and until_us is not None and start_us < until_us:
        gaps = [
            (first, last, int(gap.get("count") or 0))
            for gap in summary.get("gaps") or []
            if (first := _us(gap.get("from"))) is not None
            and (last := _us(gap.get("until"))) is not None
        ]
        drawn = timeline(await density(conn, start_us, until_us), until_us, gaps)
    kept = [
        ([kept_row(r) for r in before], [kept_row(r) for r in after])
        for before, after in await kept_around_gaps(conn, summary)
    ]
    tolerance = summary.get("tolerance_seconds")
    return RunPage(
        id=card.id,
        created_at=card.created_at,
        created_by=card.created_by,
        start=card.start,
        until=card.until,
        tolerance_seconds=float(tolerance) if isinstance(tolerance, int | float) else None,
        counts=counts,
        gaps=card.gaps,
        kept=kept,
        timeline=drawn,
        exported=exported,
        coverage=coverage_rows(summary.get("coverage")),
        status_urls={listed: run_url(run_id, listed, limit=custom) for listed, _ in counts},
        page_url=run_url(run_id),
        status=status,
        limit=limit,
        items=rows,
        differences=any(row.differences for row in rows),
        total=dict(counts).get(status, 0) if status else sum(n for _, n in counts),
        next_url=run_url(run_id, status, next_cursor, custom) if next_cursor else None,
        first_url=run_url(run_id, status, limit=custom) if cursor else None,
        json_url=f"/api/v1/reconciliations/{run_id}/items"
        + (f"?{urlencode({'status': status})}" if status else ""),
    )


def kept_row(record: dict[str, Any]) -> KeptRow:
    """An MN record of `kept_around_gaps` as a row."""
    duration = record.get("duration")
    return KeptRow(
        id=str(record["id"]),
        conference=record.get("conference_name"),
        participant=record.get("display_name") or record.get("remote_alias"),
        start=Moment.of(record.get("start")),
        end=Moment.of(record.get("end")),
        duration=hms(duration) if isinstance(duration, int) else None,
    )


def _us(text: Any) -> int | None:
    """An ISO 8601 time of a stored summary as epoch microseconds."""
    if not isinstance(text, str):
        return None
    try:
        return to_us(datetime.fromisoformat(text))
    except ValueError:
        return None
