"""Loads a generated scenario into a database the way production does: syslog frames
through the batch writer, the MN's records through the history import."""

from __future__ import annotations

import json

from sqlalchemy.ext.asyncio import AsyncEngine

from app.history.coverage import Kind, import_export
from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from parsers.framing import Frame
from tests.reconcile.generator import Scenario


async def load(engine: AsyncEngine, scenario: Scenario) -> None:
    """Ingest the scenario's syslog lines and import its MN history, saying when it was
    taken (its restore gap may run to the end of the history, where the newest end_time
    alone would hold the lost calls back as after_history)."""
    await load_syslog(engine, scenario)
    async with engine.begin() as conn:
        await import_export(
            conn,
            json.dumps(scenario.mn_records),
            "mn.json",
            Kind.FILE,
            as_of_us=us(scenario.as_of),
        )


async def load_syslog(engine: AsyncEngine, scenario: Scenario) -> None:
    """Ingest the scenario's syslog lines through the batch writer."""
    writer = BatchWriter(engine, Metrics(), batch_size=500, linger=0)
    writer.start()
    frames = [
        Frame(f"<134>1 {at.isoformat()} {node} pexip - - - {body}".encode())
        for node, at, body in scenario.lines
    ]
    writer.submit(Origin("tcp", "10.0.0.1", 1), frames)
    await writer.stop()


def us(moment: object) -> int:
    """A datetime as epoch microseconds."""
    return round(moment.timestamp() * 1_000_000)  # type: ignore[attr-defined]
