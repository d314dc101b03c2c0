"""Conversions of the store's times (integer microseconds since the epoch, UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The times a datetime can hold, as epoch microseconds.
FIRST_US = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
LAST_US = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


def to_time(us: int | None) -> datetime | None:
    """Epoch microseconds as an aware UTC datetime (exact: integer arithmetic, no float)."""
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def to_us(moment: datetime | None) -> int | None:
    """An aware (or UTC-naive) datetime as epoch microseconds."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1_000_000)


def iso(us: int | None) -> str | None:
    """Epoch microseconds as ISO 8601 UTC with `Z`."""
    moment = to_time(us)
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
