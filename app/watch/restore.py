"""Restore detection: which MN records held at an earlier pull the MN no longer returns.

A restore from backup loses every record the MN wrote since the backup, including records
cdrecon already pulled; its stored copies would still match syslog, so reconciliation alone
would not see the loss. After each pull the MN is asked how many records end in the window
(one request, one object); only where it holds fewer than were pulled from it is the window
halved and asked again, and only a small stretch is listed record by record. A loss masked
by as many records the MN holds that were never pulled goes unseen here (reconciliation
still finds records syslog saw and the MN never wrote).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from app.history.client import HistoryClient, MNConnection, MNError
from app.times import to_us
from parsers.history import parse_history_time

from . import repository

# A stretch holding at most this many pulled records is listed id by id.
LIST_AT_MOST = 1000
# A stretch this short is never halved again.
SHORTEST_US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class HistoryProbe(Protocol):
    """What restore detection asks the MN: how many participant records end in [low, high),
    and which."""

    async def count(self, low_us: int, high_us: int) -> int: ...

    async def ids(self, low_us: int, high_us: int) -> set[str]: ...

    async def oldest_end_us(self) -> int | None: ...


async def vanished(
    engine: AsyncEngine,
    probe: HistoryProbe,
    url: str,
    low_us: int,
    high_us: int,
    list_at_most: int = LIST_AT_MOST,
) -> dict[str, int]:
    """The records pulled from `url` ending in [low, high) that the MN no longer returns
    (and no restore alert names yet), id -> end time; a stretch holding at most
    `list_at_most` of them is listed rather than halved."""
    async with engine.connect() as conn:
        held = await repository.held_count(conn, url, low_us, high_us)
    if held == 0 or await probe.count(low_us, high_us) >= held:
        return {}
    if held <= list_at_most or high_us - low_us <= SHORTEST_US:
        async with engine.connect() as conn:
            records = await repository.held_records(conn, url, low_us, high_us)
        present = await probe.ids(low_us, high_us)
        return {i: end for i, end in records.items() if i not in present}
    middle = (low_us + high_us) // 2
    found = await vanished(engine, probe, url, low_us, middle, list_at_most)
    found.update(await vanished(engine, probe, url, middle, high_us, list_at_most))
    return found


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass
class ClientProbe:
    """`HistoryProbe` over the MN's REST API: counts from `meta.total_count` of a one-object
    page, ids from full pages."""

    connection: MNConnection

    async def count(self, low_us: int, high_us: int) -> int:
        """How many participant records end in [low, high)."""
        async with HistoryClient(self._counting()) as client:
            await client.page("participant", self._filters(low_us, high_us))
            if client.total_count is None:
                raise MNError(self.connection.url, "the MN's reply has no meta.total_count")
            return client.total_count

    async def oldest_end_us(self) -> int | None:
        """When the oldest participant record the MN holds ended (None when it holds none)."""
        async with HistoryClient(self._counting()) as client:
            objects, _ = await client.page("participant", {"order_by": "end_time"})
        for record in objects:
            try:
                return to_us(parse_history_time(record.get("end_time")))
            except ValueError:
                return None
        return None

    async def ids(self, low_us: int, high_us: int) -> set[str]:
        """The ids of the participant records that end in [low, high)."""
        found: set[str] = set()
        async with HistoryClient(self.connection) as client:
            async for objects in client.pages("participant", self._filters(low_us, high_us)):
                found.update(str(o.get("id")) for o in objects)
        return found

    def _counting(self) -> MNConnection:
        """The connection with pages of one record: a count, or the first in an order."""
        return MNConnection(
            self.connection.url,
            self.connection.username,
            self.connection.password,
            ca_bundle=self.connection.ca_bundle,
            page_size=1,
        )

    @staticmethod
    def _filters(low_us: int, high_us: int) -> dict[str, str]:
        window = HistoryClient.window_filters("end_time", _time(low_us), _time(high_us))
        return {**window, "order_by": "end_time"}
