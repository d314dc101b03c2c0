"""How far the stored MN history reaches: the "as of" of each import and pull, and its reading.

"As of" is the instant up to which the MN history is known complete: a call that ended
after it may be on the MN without being here yet, so it is not evidence of a loss.

Each import and pull also says which end_times it read: a whole export or a first pull
everything, an incremental pull only from its checkpoint less the overlap, a confirming pull
only its windows. The MN may write a record long after its call ended (a node that reports
when it reconnects), so a run trusts a lost record only where a read at least as fresh as
the newest "as of" covered its end (`Coverage.confirms`); elsewhere the record is
`unconfirmed` until a confirming pull reads its window again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import ConflictError, InvalidInputError
from app.times import iso

from .repository import HistoryRepository
from .service import Document, HistoryImport, import_document


class Kind(StrEnum):
    """How history came in."""

    FILE = "file"
    UPLOAD = "upload"
    PULL = "pull"
    CONFIRM = "confirm"  # a confirming pull of the windows of a run's lost records


class Basis(StrEnum):
    """How an "as of" was decided."""

    OPERATOR = "operator"  # the operator said when the export was made
    NEWEST_END = "newest end_time"  # the newest record in the export
    FILE_MTIME = "file mtime"  # the file was written before its newest end_time
    PULL_START = "pull start"  # a pull reads everything the MN had when it started


@dataclass(frozen=True, slots=True)
class AsOf:
    """An instant the history is complete up to, and how it was decided."""

    us: int
    basis: Basis

    def describe(self) -> str:
        """As the CLI prints it."""
        return f"complete up to {iso(self.us)} ({self.basis})"


def decide(
    newest_end_us: int | None,
    *,
    operator_us: int | None = None,
    mtime_us: int | None = None,
    now_us: int | None = None,
) -> AsOf | None:
    """The "as of" of an export: the operator's word, else the newest end_time in it, never
    later than the file's modification time. Never the modification time alone: a copy gets
    a new one, and calls ending between the export and the copy would look lost. None when
    nothing tells (no end_time, nor the operator's word)."""
    if operator_us is not None:
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        if operator_us > now_us:
            raise InvalidInputError(f"as of {iso(operator_us)} is in the future")
        if newest_end_us is not None and operator_us < newest_end_us:
            raise InvalidInputError(
                f"as of {iso(operator_us)} is before the newest end_time in the export "
                f"({iso(newest_end_us)}): it cannot hold a call that ended after it was made"
            )
        return AsOf(operator_us, Basis.OPERATOR)
    if newest_end_us is None:
        return None
    if mtime_us is not None and mtime_us < newest_end_us:
        return AsOf(mtime_us, Basis.FILE_MTIME)
    return AsOf(newest_end_us, Basis.NEWEST_END)


async def record_coverage(
    conn: AsyncConnection,
    kind: Kind,
    source: str,
    as_of: AsOf,
    records: int,
    window: tuple[int | None, int | None] = (None, None),
) -> None:
    """Store one read of the MN history: complete as of `as_of` for the records ending in
    `window` [from, until) (None: unbounded on that side)."""
    await HistoryRepository.for_connection(conn).add_coverage(
        conn,
        {
            "kind": kind.value,
            "source": source,
            "as_of_us": as_of.us,
            "basis": as_of.basis.value,
            "records": records,
            "recorded_us": time.time_ns() // 1000,
            "from_us": window[0],
            "until_us": window[1],
        },
    )


async def import_export(
    conn: AsyncConnection,
    document: Document,
    source: str,
    kind: Kind,
    *,
    as_of_us: int | None = None,
    mtime_us: int | None = None,
) -> tuple[HistoryImport, AsOf | None]:
    """Import an MN export (a file or an upload) and record its "as of" in the same
    transaction; the import and the "as of" (None when nothing tells, see `decide`)."""
    stored = await import_document(conn, document, source)
    as_of = decide(stored.newest_end_us, operator_us=as_of_us, mtime_us=mtime_us)
    if as_of is not None:
        await record_coverage(conn, kind, source, as_of, stored.records)
    return stored, as_of


async def record_pull(
    conn: AsyncConnection, url: str, started_us: int, stored: HistoryImport
) -> AsOf:
    """Record a finished pull: the MN's history is complete up to when the pull started, for
    the records ending from where it started reading."""
    as_of = AsOf(started_us, Basis.PULL_START)
    records = stored.participants + stored.conferences
    await record_coverage(conn, Kind.PULL, url, as_of, records, (stored.read_from_us, None))
    return as_of


async def record_confirmation(
    conn: AsyncConnection, url: str, started_us: int, window: tuple[int, int], records: int
) -> None:
    """Record a confirming pull of `window`: it read every record the MN held ending there
    when it started. It moves no "as of": the records ending elsewhere were not read."""
    as_of = AsOf(started_us, Basis.PULL_START)
    await record_coverage(conn, Kind.CONFIRM, url, as_of, records, window)


# A confirming pull reads this far either side of a lost record's end: the MN's end_time
# may differ from syslog's by the matching tolerance, and a little more costs one page.
CONFIRM_MARGIN_US = 5 * 60 * 1_000_000
# Windows closer than this are read as one: fewer requests for the same pages.
CONFIRM_JOIN_US = 3600 * 1_000_000


def confirm_windows(
    ends_us: Iterable[int], tolerance_us: int, join_us: int = CONFIRM_JOIN_US
) -> list[tuple[int, int]]:
    """The end_time windows [from, until) a confirming pull reads for lost records ending at
    `ends_us`: each end widened by the margin (at least twice the tolerance, so that
    `Coverage.confirms` holds for it), near ones joined; in order. Pure."""
    margin = max(CONFIRM_MARGIN_US, 2 * tolerance_us)
    windows: list[tuple[int, int]] = []
    for end in sorted(ends_us):
        low, high = end - margin, end + margin + 1
        if windows and low - windows[-1][1] <= join_us:
            windows[-1] = (windows[-1][0], max(windows[-1][1], high))
        else:
            windows.append((low, high))
    return windows


class HistoryNotCovered(ConflictError):
    """No MN history reaches into a run's window: every call would look lost."""

    code = "history_not_covered"


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the stored history covers: from its oldest record to its newest "as of"."""

    oldest_us: int | None
    oldest_source: str | None
    as_of_us: int | None
    as_of_source: str | None
    as_of_kind: str | None
    as_of_basis: str | None
    # The end_time windows [from, until) read as of the newest "as of" or later (None:
    # unbounded on that side): where a lost record is known lost, not just not pulled yet.
    reads: tuple[tuple[int | None, int | None], ...] = ()

    def confirms(self, end_us: int | None, tolerance_us: int) -> bool:
        """Whether a read at least as fresh as the newest "as of" covered `end_us`, give or
        take the tolerance (the MN's end_time of the same call may differ by that much): a
        record it did not return is lost as far as the MN can tell, not merely one the MN
        wrote late, after an older read. False for an unknown end."""
        if end_us is None:
            return False
        return any(
            (low is None or low <= end_us - tolerance_us)
            and (high is None or end_us + tolerance_us < high)
            for low, high in self.reads
        )

    def uncovered(self, from_us: int, until_us: int) -> str | None:
        """Why no history covers [from, until), saying what to import or pull; None when
        some does."""
        if self.as_of_us is not None and self.as_of_us > from_us:
            return None
        window = f"{iso(from_us)} to {iso(until_us)}"
        if self.as_of_us is None:
            found = "no MN history has been imported or pulled"
        else:
            found = (
                f"the newest MN history is complete only up to {iso(self.as_of_us)} "
                f"({self.as_of_source}, {self.as_of_basis})"
            )
        return (
            f"no MN history covers {window}: {found}. Import an MN export made after "
            f"{iso(from_us)} (cdrecon import-history FILE [--as-of WHEN], or POST "
            f"/api/v1/history), or pull from the MN (cdrecon pull-history); or force the run "
            f'(--force, or "force": true) to count every unmatched call as lost'
        )

    def describe(self, forced: str | None) -> dict[str, Any]:
        """The coverage as a run's summary states it; `forced` is the refusal overridden."""
        return {
            "oldest_record": None
            if self.oldest_us is None
            else {"time": iso(self.oldest_us), "source": self.oldest_source},
            "as_of": None
            if self.as_of_us is None
            else {
                "time": iso(self.as_of_us),
                "source": self.as_of_source,
                "kind": self.as_of_kind,
                "basis": self.as_of_basis,
            },
            "forced": forced is not None,
            "warning": forced,
        }


async def read(conn: AsyncConnection) -> Coverage:
    """The coverage of the stored history."""
    repository = HistoryRepository.for_connection(conn)
    oldest = await repository.oldest_record(conn)
    newest = await repository.newest_coverage(conn)
    reads = () if newest is None else await repository.reads_since(conn, int(newest["as_of_us"]))
    return Coverage(
        oldest_us=None if oldest is None else oldest[0],
        oldest_source=None if oldest is None else oldest[1],
        as_of_us=None if newest is None else int(newest["as_of_us"]),
        as_of_source=None if newest is None else str(newest["source"]),
        as_of_kind=None if newest is None else str(newest["kind"]),
        as_of_basis=None if newest is None else str(newest["basis"]),
        reads=tuple(reads),
    )
