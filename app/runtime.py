"""The long-lived parts of one running service, built once at start-up and passed down."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db.engine import create_engine
from app.ingest.writer import BatchWriter
from app.metrics import Metrics


@dataclass
class Runtime:
    """Settings, database engine, metrics and the batch writer of one service process."""

    settings: Settings
    engine: AsyncEngine
    metrics: Metrics
    writer: BatchWriter

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Wire the parts together from settings (no I/O yet)."""
        engine = create_engine(
            settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        metrics = Metrics()
        writer = BatchWriter(
            engine,
            metrics,
            batch_size=settings.batch_size,
            linger=settings.batch_linger,
            high_water=settings.queue_high_water,
            low_water=settings.queue_low_water,
            udp_limit=settings.queue_udp_limit,
        )
        return cls(settings, engine, metrics, writer)
