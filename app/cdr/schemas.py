"""What the CDR API returns: Management Node participant history field names, plus state."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model

from app.times import to_time
from parsers.mn_record import PARTICIPANT_FIELDS, Kind, MNField


def _cdr_field(item: MNField) -> tuple[Any, Any]:
    default = ... if item.name == "id" else None
    return (item.python_type, Field(default, description=item.spec.description))


# The MN participant fields a syslog CDR has (parsers/mn_record.py), in declaration order.
_CDR_FIELDS = tuple(f for f in PARTICIPANT_FIELDS if f.spec.cdr)
if TYPE_CHECKING:
    _CdrFields = BaseModel
else:
    _CdrFields = create_model(
        "CdrFields", **{f.name: _cdr_field(f) for f in _CDR_FIELDS}, __module__=__name__
    )


class Cdr(_CdrFields):
    """A participant CDR rebuilt from syslog, in MN participant history field names."""

    state: str = Field(description="open, closed, failed (never joined) or excluded (backplane)")
    node: str | None = Field(None, description="The node that logged the leg's events.")
    event_count: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Cdr:
        """From a `cdrs` table row."""
        values = {f.name: row[f.column] for f in _CDR_FIELDS}
        for time_field in _TIMES:
            values[time_field.name] = to_time(row[time_field.column])
        return cls(**values, state=row["state"], node=row["node"], event_count=row["event_count"])


_TIMES = tuple(f for f in _CDR_FIELDS if f.spec.kind is Kind.TIME)


class Event(BaseModel):
    """One call event, with the raw messages it was received in."""

    time: datetime
    node: str | None
    level: str | None
    name: str | None
    message: str | None
    fields: dict[str, str]
    truncated: bool
    message_ids: list[int]


class CdrDetail(Cdr):
    """A CDR with the events it was assembled from."""

    events: list[Event]


class Conference(BaseModel):
    """A conference instance: first join to last leave over all nodes."""

    name: str
    start_time: datetime
    end_time: datetime | None = Field(description="None while a participant is still in.")
    participant_count: int
    nodes: list[str]
