"""What the console shows of the MN history: the newest import or pull with its "as of",
the MN participant records held, and the last pull attempt with its error, if it failed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import counts

from .repository import HistoryRepository


@dataclass(frozen=True, slots=True)
class LastLoad:
    """The newest import or pull that said how far the history is complete."""

    kind: str  # file, upload or pull
    source: str
    recorded_us: int
    as_of_us: int
    basis: str
    records: int


@dataclass(frozen=True, slots=True)
class PullAttempt:
    """The newest pull, finished or failed."""

    url: str
    started_us: int
    finished_us: int
    records: int | None  # None when it failed
    error: str | None


@dataclass(frozen=True, slots=True)
class HistoryStatus:
    """The MN history at a glance (maintained counts and single rows: no scan)."""

    participants: int
    last_load: LastLoad | None
    last_pull: PullAttempt | None


async def read_status(conn: AsyncConnection) -> HistoryStatus:
    """The MN history's state now."""
    repository = HistoryRepository.for_connection(conn)
    latest = await repository.latest_coverage(conn)
    attempt = await repository.last_pull_attempt(conn)
    return HistoryStatus(
        participants=(await counts.read(conn))["mn_participants"],
        last_load=None
        if latest is None
        else LastLoad(
            kind=str(latest["kind"]),
            source=str(latest["source"]),
            recorded_us=int(latest["recorded_us"]),
            as_of_us=int(latest["as_of_us"]),
            basis=str(latest["basis"]),
            records=int(latest["records"]),
        ),
        last_pull=None
        if attempt is None
        else PullAttempt(
            url=str(attempt["url"]),
            started_us=int(attempt["started_us"]),
            finished_us=int(attempt["finished_us"]),
            records=None if attempt["records"] is None else int(attempt["records"]),
            error=attempt["error"],
        ),
    )
