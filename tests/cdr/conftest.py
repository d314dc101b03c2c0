"""Fixtures of the CDR tests: a real database, empty or holding the scenario's CDRs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from parsers.framing import Frame
from tests.cdr.scenario import LINES


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def ingested(engine: AsyncEngine) -> AsyncEngine:
    """The database with the scenario's lines stored and derived by the batch writer."""
    writer = BatchWriter(engine, Metrics(), batch_size=100, linger=0)
    writer.start()
    writer.submit(Origin("tcp", "h", 1), [Frame(line.rfc5424()) for line in LINES])
    await writer.stop()
    return engine
