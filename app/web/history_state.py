"""The overview's MN history block: the records held, the newest import or pull with its
"as of", and the last pull attempt with its error, as the page shows them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from app.history.status import read_status
from app.times import iso

from .moment import Moment

KINDS = {"file": "file import", "upload": "upload", "pull": "pull from the MN"}


@dataclass(frozen=True, slots=True)
class LoadView:
    """The newest import or pull."""

    kind: str
    source: str
    recorded: Moment | None
    as_of: Moment | None
    basis: str
    records: int


@dataclass(frozen=True, slots=True)
class PullView:
    """The last pull attempt."""

    url: str
    started: Moment | None
    seconds: float
    records: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class HistoryView:
    """The block; `last_load` and `last_pull` are None when there is none yet."""

    participants: int
    last_load: LoadView | None
    last_pull: PullView | None


async def load_history(conn: AsyncConnection) -> HistoryView:
    """The MN history's state, read from maintained counts and single rows."""
    status = await read_status(conn)
    load, pull = status.last_load, status.last_pull
    return HistoryView(
        participants=status.participants,
        last_load=None
        if load is None
        else LoadView(
            kind=KINDS.get(load.kind, load.kind),
            source=load.source,
            recorded=Moment.of(iso(load.recorded_us)),
            as_of=Moment.of(iso(load.as_of_us)),
            basis=load.basis,
            records=load.records,
        ),
        last_pull=None
        if pull is None
        else PullView(
            url=pull.url,
            started=Moment.of(iso(pull.started_us)),
            seconds=(pull.finished_us - pull.started_us) / 1_000_000,
            records=pull.records,
            error=pull.error,
        ),
    )
