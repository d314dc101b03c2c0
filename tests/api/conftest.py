"""A real service holding some of everything a list can page through."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Service
from tests.reconcile.generator import generate


@dataclass
class Loaded:
    """A running service with CDRs, MN records, a run, export batches and audit entries."""

    service: Service
    admin: str
    billing: str
    run: dict[str, Any]


# One for the package: its tests only add runs, batches and audit entries to it.
@pytest.fixture(scope="package")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    service = Service(tmp_path_factory.mktemp("api-service"))
    service.start()
    try:
        admin = service.token("test-admin", "admin")
        billing = service.token("billing", "billing")
        scenario = generate(seed=11, days=1, calls_per_day=12)
        frames = [
            f"<134>1 {at.isoformat()} {node} pexip - - - {body}\n".encode()
            for node, at, body in scenario.lines
        ]
        with socket.create_connection(("127.0.0.1", service.tcp_port)) as sock:
            sock.sendall(b"".join(frames))
        assert service.wait_for("cdrecon_messages_stored_total", len(frames)) == len(frames)
        uploaded = service.post(
            "/api/v1/history",
            params={"filename": "mn.json", "as_of": scenario.as_of.isoformat()},
            content=json.dumps(scenario.mn_records),
        )
        assert uploaded.status_code == 200, uploaded.text
        start, end = scenario.window
        run = service.post(
            "/api/v1/reconciliations", json={"from": start.isoformat(), "until": end.isoformat()}
        )
        assert run.status_code == 201, run.text
        for _ in range(3):
            batch = service.post(
                "/api/v1/exports",
                token=billing,
                json={"run_id": run.json()["id"], "include_exported": True},
            )
            assert batch.status_code == 201, batch.text
        yield Loaded(service=service, admin=admin, billing=billing, run=run.json())
    finally:
        if service.process is not None:
            service.stop()
