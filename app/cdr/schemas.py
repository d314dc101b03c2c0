"""What the CDR API returns: Management Node participant history field names, plus state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.times import to_time


class Cdr(BaseModel):
    """A participant CDR rebuilt from syslog, in MN participant history field names."""

    id: str = Field(description="Participant-id: the MN history `id` of the leg.")
    call_uuid: str | None = None
    conversation_id: str | None = None
    conference_name: str | None = None
    display_name: str | None = None
    local_alias: str | None = None
    remote_alias: str | None = None
    protocol: str | None = None
    call_direction: str | None = None
    role: str | None = None
    remote_address: str | None = None
    remote_port: int | None = None
    signalling_node: str | None = None
    media_node: str | None = None
    proxy_node: str | None = None
    system_location: str | None = None
    vendor: str | None = None
    service_type: str | None = None
    service_tag: str | None = None
    disconnect_reason: str | None = None
    start_time: datetime | None = Field(None, description="`Participant has joined.`, UTC.")
    end_time: datetime | None = Field(None, description="`Participant has disconnected.`")
    duration: int | None = Field(None, description="Whole seconds, rounded down like the MN.")
    state: str = Field(description="open, closed, failed (never joined) or excluded (backplane)")
    node: str | None = Field(None, description="The node that logged the leg's events.")
    event_count: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Cdr:
        """From a `cdrs` table row."""
        values = {k: v for k, v in row.items() if k in cls.model_fields}
        return cls(**values, start_time=to_time(row["start_us"]), end_time=to_time(row["end_us"]))


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
