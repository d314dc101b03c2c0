"""Where a batch of frames came from: the fields every stored message carries about its sender."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Origin:
    """The source of frames: one per connection, UDP peer or imported file."""

    transport: str  # tcp, tls, udp or file
    peer_host: str | None = None
    peer_port: int | None = None
    tls_subject: str | None = None
    source: str | None = None  # the file a backfilled message came from

    @property
    def peer(self) -> str:
        """The peer as one string, for logs."""
        if self.peer_host is None:
            return self.source or "-"
        return f"{self.peer_host}:{self.peer_port}" if self.peer_port else self.peer_host
