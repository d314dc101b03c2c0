"""MN history in: documents (JSON or CSV) imported whole or not at all, and pulls over REST."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import InvalidInputError
from parsers.history import RecordError, parse_document, parse_history_time
from parsers.history_documents import HistoryFormatError
from parsers.mn_record import (
    COMPARED_COLUMN,
    COMPARED_FIELDS,
    CONFERENCE_FIELDS,
    PARTICIPANT_FIELDS,
    Kind,
    MNConference,
    MNField,
    MNParticipant,
    compared_text,
)

from .repository import HistoryRepository

# The REST client (and httpx with it) loads only for a pull: importing documents, and every
# reconciliation, which reads the history's coverage through this module, do without it.
if TYPE_CHECKING:
    from .client import Resource

log = logging.getLogger(__name__)

# Pulls re-read this far behind the checkpoint: the MN may write a record a little after
# a later one (calls ending on different nodes), and re-reading costs only an upsert.
PULL_OVERLAP = timedelta(minutes=10)


class HistoryImportError(InvalidInputError):
    """A document that was rejected, with the reason for each bad record."""

    def __init__(self, source: str, errors: list[RecordError]) -> None:
        self.source = source
        self.errors = errors
        first = errors[0]
        super().__init__(
            f"{source}: {len(errors)} bad record(s); nothing imported. First: record "
            f"{first.row}{f' ({first.record_id})' if first.record_id else ''}"
            f"{f', field {first.field}' if first.field else ''}: {first.reason}"
        )

    def detail(self) -> dict[str, Any]:
        """The JSON error body, with every bad record."""
        return {
            **super().detail(),
            "errors": [
                {"row": e.row, "id": e.record_id, "field": e.field, "reason": e.reason}
                for e in self.errors
            ],
        }


@dataclass(slots=True)
class HistoryImport:
    """What one import stored."""

    source: str
    participants: int = 0
    conferences: int = 0
    errors: list[RecordError] = field(default_factory=list)
    newest_end_us: int | None = None  # the newest end_time among the records
    # Ids found more than once in the document: each is stored once, its last copy.
    duplicate_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ExportRows:
    """A document's records as rows to store, each id once (its last copy)."""

    participants: list[dict[str, Any]]
    conferences: list[dict[str, Any]]
    duplicate_ids: list[str]
    newest_end_us: int | None

    def stored(self, source: str) -> HistoryImport:
        """What storing every row stores."""
        return HistoryImport(
            source,
            len(self.participants),
            len(self.conferences),
            newest_end_us=self.newest_end_us,
            duplicate_ids=self.duplicate_ids,
        )


def _us(moment: datetime | None) -> int | None:
    return None if moment is None else round(moment.timestamp() * 1_000_000)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _columns(declared: Iterable[MNField]) -> tuple[tuple[str, str, bool], ...]:
    """A table's columns of declared fields: (column, field, whether it is a time)."""
    return tuple((f.column, f.name, f.spec.kind is Kind.TIME) for f in declared)


_STORED = _columns(f for f in PARTICIPANT_FIELDS if f.spec.stored)
_CONFERENCE = _columns(CONFERENCE_FIELDS)


def _row(
    record: MNParticipant | MNConference,
    columns: tuple[tuple[str, str, bool], ...],
    source: str,
    now_us: int,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        column: _us(getattr(record, name)) if is_time else getattr(record, name)
        for column, name, is_time in columns
    }
    row["record"] = json.dumps(dict(record.raw), default=_jsonable, ensure_ascii=False)
    row["source"] = source
    row["imported_us"] = now_us
    return row


def participant_row(record: MNParticipant, source: str, now_us: int) -> dict[str, Any]:
    """The `mn_participants` row of a parsed record."""
    row = _row(record, _STORED, source, now_us)
    row[COMPARED_COLUMN] = compared_text([getattr(record, f.name) for f in COMPARED_FIELDS])
    return row


def conference_row(record: MNConference, source: str, now_us: int) -> dict[str, Any]:
    """The `mn_conferences` row of a parsed record."""
    return _row(record, _CONFERENCE, source, now_us)


_Record = TypeVar("_Record", MNParticipant, MNConference)


def _last_copies(records: list[_Record], duplicate_ids: list[str]) -> list[_Record]:
    """Each id's last copy, in the order ids first appear; adds repeated ids to
    `duplicate_ids` (once each)."""
    by_id: dict[str, _Record] = {}
    for record in records:
        if record.id in by_id and record.id not in duplicate_ids:
            duplicate_ids.append(record.id)
        by_id[record.id] = record
    return list(by_id.values())


def read_export(document: bytes | str, source: str) -> ExportRows:
    """The rows of one MN export, ready to store; pure CPU work (a caller may run it in a
    thread or process). A document with any bad record is rejected whole
    (HistoryImportError lists each), so nothing is ever half-imported."""
    try:
        parsed = parse_document(document, filename=source)
    except HistoryFormatError as exc:
        raise InvalidInputError(f"{source}: not MN history: {exc}") from exc
    if parsed.errors:
        raise HistoryImportError(source, parsed.errors)
    duplicate_ids: list[str] = []
    participants = _last_copies(parsed.participants, duplicate_ids)
    conferences = _last_copies(parsed.conferences, duplicate_ids)
    ends = [p.end_time for p in participants] + [c.end_time for c in conferences]
    newest_end = max((end for end in ends if end is not None), default=None)
    now_us = time.time_ns() // 1000
    return ExportRows(
        [participant_row(p, source, now_us) for p in participants],
        [conference_row(c, source, now_us) for c in conferences],
        duplicate_ids,
        _us(newest_end),
    )


async def import_document(
    conn: AsyncConnection, document: bytes | str, source: str
) -> HistoryImport:
    """Store every record of one MN export in `conn`'s transaction, or none (`read_export`)."""
    rows = read_export(document, source)
    repository = HistoryRepository.for_connection(conn)
    await repository.upsert_participants(conn, rows.participants)
    await repository.upsert_conferences(conn, rows.conferences)
    return rows.stored(source)


# The MN client's page reader: (resource, filters, a `meta.next` link or None for the first
# page) -> (that page's objects, its own `meta.next`).
Page = Callable[
    ["Resource", Mapping[str, str], str | None],
    Awaitable[tuple[list[dict[str, Any]], str | None]],
]
WindowFilters = Callable[[str, datetime | None, datetime | None], dict[str, str]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def pull(
    engine: AsyncEngine,
    page: Page,
    url: str,
    window_filters: WindowFilters,
    since: datetime | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> HistoryImport:
    """Pull participant and conference records written since the checkpoint (or `since`).

    Pages by keyset on `end_time`: every request asks, from offset 0, for the records that end
    at or after T, in `end_time` order, where T starts at the checkpoint less PULL_OVERLAP (or
    `since`) and then is the newest `end_time` stored so far. Records ending at T are read again
    and not stored twice. Only through a page whose records all end at T (T could not advance)
    is the MN's `meta.next` (an offset) followed. So records the MN deletes during a pull (its
    retention purge removes the oldest) cannot shift unread ones past a page boundary, as they
    would if the whole window were paged by offset, and neither can a sort that is not stable
    across requests.

    Each page is stored in its own transaction together with the checkpoint it reaches, so an
    interrupted pull resumes where it stopped and never skips a record.
    """
    result = HistoryImport(url)
    resources: tuple[Resource, ...] = ("participant", "conference")
    for resource in resources:
        async with engine.begin() as conn:
            saved = await HistoryRepository.for_connection(conn).checkpoint(conn, resource)
        start = since
        if start is None and saved is not None and saved[0] == url:
            start = datetime.fromtimestamp(saved[1] / 1_000_000, UTC) - PULL_OVERLAP
        await _pull_resource(engine, page, url, window_filters, resource, start, result, progress)
    return result


async def _pull_resource(
    engine: AsyncEngine,
    page: Page,
    url: str,
    window_filters: WindowFilters,
    resource: Resource,
    start: datetime | None,
    result: HistoryImport,
    progress: Callable[[str, int], None] | None,
) -> None:
    """Pull one resource from `start` on, keyset-paged on end_time (see `pull`)."""
    # T, as the filter's datetime and as microseconds to compare with; None reads everything.
    # A naive `start` is UTC, as window_filters takes it.
    bound = start.replace(tzinfo=UTC) if start is not None and start.tzinfo is None else start
    bound_us = _us(bound)
    # Ids of the records stored that end at T: the next page returns them again.
    at_bound: set[str] = set()
    link: str | None = None  # the `meta.next` followed through a page of ties at T
    followed: set[str] = set()
    while True:
        filters = {**window_filters("end_time", bound, None), "order_by": "end_time"}
        objects, following = await page(resource, filters, link)
        ends = [_end_us(o) for o in objects]
        last = max((e for e in ends if e is not None), default=None)
        fresh = [
            o for o, end in zip(objects, ends, strict=True) if not _seen(o, end, bound_us, at_bound)
        ]
        if fresh:
            async with engine.begin() as conn:
                stored = await import_document(conn, json.dumps(fresh), url)
                if last is not None:
                    await HistoryRepository.for_connection(conn).save_checkpoint(
                        conn, resource, url, last, time.time_ns() // 1000
                    )
            result.participants += stored.participants
            result.conferences += stored.conferences
            if progress is not None:
                progress(resource, len(fresh))
        if following is None:
            return
        if last is not None and (bound_us is None or last > bound_us):
            # T advances: ask again from offset 0, so that nothing deleted below T matters.
            bound_us, bound = last, _EPOCH + timedelta(microseconds=last)
            at_bound = {_id(o) for o, end in zip(objects, ends, strict=True) if end == last}
            link, followed = None, set()
        else:
            # A whole page ending at T: asking from T again would return the same page, so
            # page on through the ties by offset; a link seen before would never end.
            if following in followed:
                from .client import MNError

                raise MNError(url, f"{resource} paging does not advance (meta.next {following!r})")
            followed.add(following)
            at_bound.update(_id(o) for o, end in zip(objects, ends, strict=True) if end == bound_us)
            link = following


def _end_us(record: Mapping[str, Any]) -> int | None:
    """A record's end_time in microseconds; None when missing or bad (the import reports it)."""
    try:
        return _us(parse_history_time(record.get("end_time")))
    except ValueError:
        return None


def _id(record: Mapping[str, Any]) -> str:
    return str(record.get("id"))


def _seen(
    record: Mapping[str, Any], end: int | None, bound_us: int | None, at_bound: set[str]
) -> bool:
    """True for a record ending at T that is already stored (read again by a keyset page)."""
    return end is not None and end == bound_us and _id(record) in at_bound
