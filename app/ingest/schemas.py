"""What the ingest API returns."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Stats(BaseModel):
    """Totals across the whole store. Field names are relied on by scripts: keep them."""

    messages: int = Field(description="Rows in the raw message store.")
    parse_failures: int = Field(description="Stored messages that fit no syslog format.")
    events: int = Field(description="Pexip call events extracted from stored messages.")
    cdrs: int = Field(description="Participant CDRs assembled from the events.")
    nodes: int = Field(description="Distinct sending hosts seen.")
    queued: int = Field(description="Messages received and waiting for the database.")
    derive_pending: int = Field(
        description="Messages stored whose call events and CDRs are not derived yet: deriving "
        "waits while the database is behind the senders."
    )


class Node(BaseModel):
    """One sending host: the syslog HOSTNAME, or the peer address when a frame has none."""

    host: str
    last_peer: str | None
    last_transport: str
    first_seen: datetime
    last_seen: datetime
    messages: int
    parse_failures: int
