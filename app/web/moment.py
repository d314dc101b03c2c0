"""A UTC time as the pages show it: to the second for people, in full for machines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class Moment:
    """A UTC time as shown (ISO 8601 to the second) and as machine-readable (full ISO)."""

    text: str
    iso: str

    @classmethod
    def of(cls, moment: datetime | str | None) -> Moment | None:
        """From an aware datetime or an ISO 8601 string; None stays None."""
        if moment is None:
            return None
        if isinstance(moment, str):
            text = moment
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                return cls(text, text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
        full = moment.isoformat().replace("+00:00", "Z")
        return cls(moment.replace(microsecond=0).isoformat().replace("+00:00", "Z"), full)
