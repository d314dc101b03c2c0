"""Loads a generated scenario the way production does: into a database (syslog frames
through the batch writer, the MN's records through the history import), or into a running
service (syslog over TCP, the MN's records and a reconciliation through the API)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine
from app.history.coverage import Kind, import_export
from app.ingest.origin import Origin
from app.ingest.writer import BatchWriter
from app.metrics import Metrics
from parsers.framing import Frame
from tests.conftest import Service
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


@asynccontextmanager
async def loaded_engine(
    database_url: str, scenario: Scenario, *, history: bool = True
) -> AsyncIterator[AsyncEngine]:
    """An engine on `database_url` holding the scenario's syslog, and its MN history unless
    `history` is False; disposed of on exit."""
    engine = create_engine(database_url)
    try:
        await (load(engine, scenario) if history else load_syslog(engine, scenario))
        yield engine
    finally:
        await engine.dispose()


def send_syslog(service: Service, scenario: Scenario, extra: Sequence[bytes] = ()) -> int:
    """The scenario's lines as RFC 5424 frames over TCP, then the `extra` frames; returns
    how many frames were sent once the service has stored them all."""
    frames = [
        f"<134>1 {at.isoformat()} {node} pexip - - - {body}".encode()
        for node, at, body in scenario.lines
    ]
    frames.extend(extra)
    with socket.create_connection(("127.0.0.1", service.tcp_port)) as sock:
        sock.sendall(b"".join(frame + b"\n" for frame in frames))
    assert service.wait_for("cdrecon_messages_stored_total", len(frames)) == len(frames)
    return len(frames)


def upload_history(service: Service, scenario: Scenario) -> httpx.Response:
    """The scenario's MN records uploaded through the API, saying when they were taken."""
    uploaded = service.post(
        "/api/v1/history",
        params={"filename": "mn.json", "as_of": scenario.as_of.isoformat()},
        content=json.dumps(scenario.mn_records),
    )
    assert uploaded.status_code == 200, uploaded.text
    return uploaded


def reconcile(service: Service, scenario: Scenario) -> dict[str, Any]:
    """A reconciliation run over the scenario's window, as the API returns it."""
    start, end = scenario.window
    run = service.post(
        "/api/v1/reconciliations", json={"from": start.isoformat(), "until": end.isoformat()}
    )
    assert run.status_code == 201, run.text
    summary: dict[str, Any] = run.json()
    return summary


def load_service(
    service: Service, scenario: Scenario, extra: Sequence[bytes] = ()
) -> dict[str, Any]:
    """Syslog in over TCP (with the `extra` frames), MN history uploaded, and a
    reconciliation run over the window; returns the run."""
    send_syslog(service, scenario, extra)
    upload_history(service, scenario)
    return reconcile(service, scenario)


def us(moment: object) -> int:
    """A datetime as epoch microseconds."""
    return round(moment.timestamp() * 1_000_000)  # type: ignore[attr-defined]
