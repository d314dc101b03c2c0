"""What the HTTP side may use of the running service: a small typed state.

Routes see only `ServiceState`, never the runtime or the batch writer behind it: the
runtime wires the process together and hands the app this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.metrics import Metrics


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What the HTTP side may use of the running service."""

    settings: Settings
    engine: AsyncEngine
    metrics: Metrics
    # Messages read but not yet stored (the writer's queue), asked at each call.
    queued: Callable[[], int]
    # Why the writer has committed nothing for a while with messages queued; None if it keeps up.
    stalled: Callable[[], str | None]
    # Why the database file's path no longer leads to the open file (SQLite); None if it does.
    database_file: Callable[[], str | None] = lambda: None
