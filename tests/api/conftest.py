"""A real service holding some of everything a list can page through."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Service, new_postgres_database
from tests.reconcile.generator import generate
from tests.reconcile.loading import load_service


@dataclass
class Loaded:
    """A running service with CDRs, MN records, a run, export batches and audit entries."""

    service: Service
    admin: str
    billing: str
    run: dict[str, Any]


def _loaded(service: Service) -> Loaded:
    service.start()
    admin = service.token("test-admin", "admin")
    billing = service.token("billing", "billing")
    run = load_service(service, generate(seed=11, days=1, calls_per_day=12))
    for _ in range(3):
        batch = service.post(
            "/api/v1/exports",
            token=billing,
            json={"run_id": run["id"], "include_exported": True},
        )
        assert batch.status_code == 201, batch.text
    return Loaded(service=service, admin=admin, billing=billing, run=run)


# One for the package: its tests only add runs, batches and audit entries to it.
@pytest.fixture(scope="package")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    service = Service(tmp_path_factory.mktemp("api-service"))
    try:
        yield _loaded(service)
    finally:
        if service.process is not None:
            service.stop()


@pytest.fixture(scope="package")
def loaded_postgresql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """The same on a PostgreSQL database of its own."""
    with new_postgres_database() as url:
        service = Service(
            tmp_path_factory.mktemp("api-service-pg"), env={"CDRECON_DATABASE_URL": url}
        )
        try:
            yield _loaded(service)
        finally:
            if service.process is not None:
                service.stop()
