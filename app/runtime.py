"""The long-lived parts of one running service, built once at start-up and passed down."""

from __future__ import annotations

import gc
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.state import ServiceState
from app.cdr.worker import DeriveWorker
from app.config import Settings
from app.ingest.writer import BatchWriter
from app.metrics import Metrics


@dataclass
class Runtime:
    """Settings, database engine, metrics and the batch writer of one process; the caller
    created the engine and disposes of it."""

    settings: Settings
    engine: AsyncEngine
    metrics: Metrics
    writer: BatchWriter

    @classmethod
    def build(cls, settings: Settings, engine: AsyncEngine, *, importing: bool = False) -> Runtime:
        """Wire the parts together around the process's engine (no I/O yet). With
        `settings.derive_process` the writer stores raw and lists, and the deriving process
        derives (app/cdr/worker.py), for `serve` and file imports alike. Without it, `serve`
        derives as it stores while the database keeps up and catches up later when it falls
        behind; a file import (`importing`) always derives as it stores, since waiting costs
        no sender anything there and deriving later would read every message back."""
        metrics = Metrics()
        writer = BatchWriter(
            engine,
            metrics,
            batch_size=settings.batch_size,
            linger=settings.batch_linger,
            high_water=settings.queue_high_water,
            low_water=settings.queue_low_water,
            udp_limit=settings.queue_udp_limit,
            high_water_bytes=settings.queue_high_water_bytes,
            low_water_bytes=settings.queue_low_water_bytes,
            udp_limit_bytes=settings.queue_udp_limit_bytes,
            defer_backlog=None if importing else settings.defer_backlog,
            derive_elsewhere=DeriveWorker(
                settings.database_url, settings.sqlite_synchronous, settings.log_level
            )
            if settings.derive_process
            else None,
        )
        return cls(settings, engine, metrics, writer)

    def service_state(self, request_engine: AsyncEngine | None = None) -> ServiceState:
        """What the HTTP side may use: no writer, only its queue length and whether it stalls;
        `request_engine` (short waits, see app/db/engine.py) instead of the writer's."""
        writer = self.writer
        return ServiceState(
            self.settings,
            request_engine or self.engine,
            self.metrics,
            lambda: writer.pending,
            writer.stalled,
        )


def settle_garbage_collector() -> None:
    """Tune the cyclic garbage collector for ingest, once start-up is done.

    Ingest makes a few short-lived objects per message (parsed headers, events, rows), and
    with the default thresholds the collector runs every 700 of them, each time walking the
    whole young heap: a sixth of the CPU of a busy writer. Everything alive after start-up
    (modules, the app, the schema) lives as long as the process, so it is frozen out of
    collection, and the young generations are collected ten times less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
