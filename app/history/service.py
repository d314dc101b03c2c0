"""MN history in: documents (JSON or CSV) imported whole or not at all, read record by record,
and pulls over REST."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import (
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import InvalidInputError
from parsers.history import DocumentRecord, RecordError, iter_document, parse_history_time
from parsers.history_documents import Chunks, HistoryFormatError
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


# An import reads its document record by record and keeps no more than this many bad records
# and repeated ids to list (it counts them all), so its memory does not follow the document.
LISTED = 1000
# Records stored per statement batch (and per transaction where the caller commits per batch).
BATCH_RECORDS = 500


class HistoryImportError(InvalidInputError):
    """A document that was rejected, with the reason for each bad record (the first LISTED;
    `count` is all of them)."""

    def __init__(self, source: str, errors: list[RecordError], count: int | None = None) -> None:
        self.source = source
        self.errors = errors
        self.count = len(errors) if count is None else count
        first = errors[0]
        super().__init__(
            f"{source}: {self.count} bad record(s); nothing imported. First: record "
            f"{first.row}{f' ({first.record_id})' if first.record_id else ''}"
            f"{f', field {first.field}' if first.field else ''}: {first.reason}"
        )

    def detail(self) -> dict[str, Any]:
        """The JSON error body, with every bad record listed."""
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
    newest_end_us: int | None = None  # the newest end_time among the records (every copy)
    # Ids found more than once in the document: each is stored once, its last copy. The
    # first LISTED of them, in the order their second copy came; `duplicates` counts them all.
    duplicate_ids: list[str] = field(default_factory=list)
    duplicates: int = 0
    # A pull: the end_time its participant read started at (None: from the first record).
    read_from_us: int | None = None

    @property
    def records(self) -> int:
        return self.participants + self.conferences


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


Document = bytes | str | Iterable[bytes]
MNRecord = MNParticipant | MNConference


def _chunks(document: Document) -> Chunks:
    return [document] if isinstance(document, bytes | str) else document


def _typed(document: Document, source: str) -> Iterator[DocumentRecord]:
    """`iter_document`, with an unreadable document refused as InvalidInputError."""
    try:
        yield from iter_document(_chunks(document), source)
    except HistoryFormatError as exc:
        raise InvalidInputError(f"{source}: not MN history: {exc}") from exc


class _Problems:
    """The bad records of a document: the first LISTED, and how many."""

    def __init__(self) -> None:
        self.listed: list[RecordError] = []
        self.count = 0

    def add(self, errors: tuple[RecordError, ...]) -> None:
        self.count += len(errors)
        self.listed.extend(errors[: LISTED - len(self.listed)])

    def check(self, source: str) -> None:
        if self.count:
            raise HistoryImportError(source, self.listed, self.count)


def _newest(newest_us: int | None, record: MNRecord) -> int | None:
    end = _us(record.end_time)
    return end if newest_us is None or (end is not None and end > newest_us) else newest_us


def check_export(document: Document, source: str) -> int | None:
    """Read a whole MN export, keeping none of it: refuse it (HistoryImportError listing the
    bad records, InvalidInputError if unreadable) or return its newest end_time in µs. Pure
    CPU work (a caller may run it in a thread or process); the first pass of an import that
    commits as it goes."""
    problems = _Problems()
    newest_us: int | None = None
    for typed in _typed(document, source):
        if typed.record is None:
            problems.add(typed.errors)
        else:
            newest_us = _newest(newest_us, typed.record)
    problems.check(source)
    return newest_us


def export_batches(document: Document, source: str) -> Generator[list[MNRecord], None, None]:
    """The typed records of an export `check_export` accepted, BATCH_RECORDS at a time."""
    batch: list[MNRecord] = []
    for typed in _typed(document, source):
        if typed.record is None:
            raise InvalidInputError(f"{source}: changed while it was imported")
        batch.append(typed.record)
        if len(batch) == BATCH_RECORDS:
            yield batch
            batch = []
    if batch:
        yield batch


async def store_batch(
    conn: AsyncConnection, batch: list[MNRecord], result: HistoryImport, now_us: int
) -> None:
    """Store one batch of an import's records in `conn`'s transaction and count them into
    `result`. `now_us` is the import's own instant: every row it stores carries it, so a
    later batch finds the ids stored earlier in the same import (a repeated id, stored once,
    its last copy). A row stored again as a repeat carries `now_us + 1`, so that a third copy
    does not count as another repeated id."""
    repository = HistoryRepository.for_connection(conn)
    await repository.take_write_lock(conn)  # before reading what the import stored so far
    for kind in ("participant", "conference"):
        records = [r for r in batch if isinstance(r, MNParticipant) == (kind == "participant")]
        if not records:
            continue
        ids = list(dict.fromkeys(r.id for r in records))
        earlier = await repository.imported_by(conn, kind, ids, result.source, (now_us, now_us + 1))
        rows: dict[str, dict[str, Any]] = {}
        for record in records:
            at = now_us
            if record.id in rows or record.id in earlier:
                if rows.get(record.id, {}).get("imported_us", earlier.get(record.id)) == now_us:
                    result.duplicates += 1
                    if len(result.duplicate_ids) < LISTED:
                        result.duplicate_ids.append(record.id)
                at = now_us + 1
            if isinstance(record, MNParticipant):
                rows[record.id] = participant_row(record, result.source, at)
            else:
                rows[record.id] = conference_row(record, result.source, at)
            result.newest_end_us = _newest(result.newest_end_us, record)
        if kind == "participant":
            await repository.upsert_participants(conn, list(rows.values()))
            result.participants += len(rows) - len(earlier)
        else:
            await repository.upsert_conferences(conn, list(rows.values()))
            result.conferences += len(rows) - len(earlier)


async def import_document(conn: AsyncConnection, document: Document, source: str) -> HistoryImport:
    """Store every record of one MN export in `conn`'s transaction, or none: a document
    with any bad record is rejected whole (HistoryImportError lists each) once it has been
    read to its end, and the caller's rollback undoes the batches stored before."""
    result = HistoryImport(source)
    now_us = time.time_ns() // 1000
    problems = _Problems()
    batch: list[MNRecord] = []
    for typed in _typed(document, source):
        if typed.record is None:
            problems.add(typed.errors)
        elif not problems.count:  # past a bad record, only read on for the others
            batch.append(typed.record)
            if len(batch) == BATCH_RECORDS:
                await store_batch(conn, batch, result, now_us)
                batch = []
    problems.check(source)
    if batch:
        await store_batch(conn, batch, result, now_us)
    return result


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

    `read_from_us` says where the participant read started: a record ending before it that
    the MN writes late (a node that reports when it reconnects) is not read, so a run trusts
    this pull for no record older than that (`coverage.Coverage.confirms`).
    """
    result = HistoryImport(url)
    resources: tuple[Resource, ...] = ("participant", "conference")
    for resource in resources:
        async with engine.begin() as conn:
            saved = await HistoryRepository.for_connection(conn).checkpoint(conn, resource)
        start = since
        if start is None and saved is not None and saved[0] == url:
            start = datetime.fromtimestamp(saved[1] / 1_000_000, UTC) - PULL_OVERLAP
        start = start.replace(tzinfo=UTC) if start is not None and start.tzinfo is None else start
        if resource == "participant":
            result.read_from_us = _us(start)
        await _pull_resource(engine, page, url, window_filters, resource, start, result, progress)
    return result


async def confirm(
    engine: AsyncEngine,
    page: Page,
    url: str,
    window_filters: WindowFilters,
    windows: Sequence[tuple[int, int]],
) -> HistoryImport:
    """Read again every participant record ending in each window [from, until) (µs), as a
    pull reads (keyset on end_time, a transaction a page), without moving the checkpoint:
    the confirming read of a run's lost records, which finds those the MN wrote late."""
    result = HistoryImport(url)
    for low, high in windows:
        await _pull_resource(
            engine,
            page,
            url,
            window_filters,
            "participant",
            _EPOCH + timedelta(microseconds=low),
            result,
            None,
            until=_EPOCH + timedelta(microseconds=high),
        )
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
    until: datetime | None = None,
) -> None:
    """Pull one resource from `start` on, keyset-paged on end_time (see `pull`); with
    `until`, only records ending before it, and the checkpoint is left where it is."""
    # T, as the filter's datetime and as microseconds to compare with; None reads everything.
    # A naive `start` is UTC, as window_filters takes it.
    bound = start.replace(tzinfo=UTC) if start is not None and start.tzinfo is None else start
    bound_us = _us(bound)
    # Ids of the records stored that end at T: the next page returns them again.
    at_bound: set[str] = set()
    link: str | None = None  # the `meta.next` followed through a page of ties at T
    followed: set[str] = set()
    while True:
        filters = {**window_filters("end_time", bound, until), "order_by": "end_time"}
        objects, following = await page(resource, filters, link)
        ends = [_end_us(o) for o in objects]
        last = max((e for e in ends if e is not None), default=None)
        fresh = [
            o for o, end in zip(objects, ends, strict=True) if not _seen(o, end, bound_us, at_bound)
        ]
        if fresh:
            async with engine.begin() as conn:
                stored = await import_document(conn, json.dumps(fresh), url)
                if last is not None and until is None:
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
