"""Conversions of the store's times (integer microseconds since the epoch, UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def to_time(us: int | None) -> datetime | None:
    """Epoch microseconds as an aware UTC datetime."""
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, UTC)


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
