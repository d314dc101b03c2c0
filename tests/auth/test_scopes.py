"""Every API route against no token, a wrong token, a revoked token, billing and admin."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Service

ADMIN_ONLY = {
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/nodes"),
    ("POST", "/api/v1/history"),
    ("POST", "/api/v1/reconciliations"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/alerts/999999"),
    ("GET", "/api/v1/alerts/999999/records"),
    ("POST", "/api/v1/alerts/999999/ack"),
    ("POST", "/api/v1/alerts/999999/confirm"),
}
PATH_VALUES = {
    "participant_id": "p-none",
    "run_id": "999999",
    "export_id": "exp_none",
    "alert_id": "999999",
}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("scopes"))
    service.start()
    service.token("admin", "admin")
    service.token("billing", "billing")
    service.token("gone", "billing")
    service.cli("token", "revoke", "gone")
    yield service
    service.stop()


def routes(service: Service) -> list[tuple[str, str]]:
    spec = service.get("/openapi.json", token="").json()
    found = []
    for path, operations in spec["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        concrete = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
        found += [(method.upper(), concrete) for method in operations]
    return sorted(found)


def call(service: Service, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.request(method, f"{service.url}{path}", headers=headers, json={}, timeout=30)


def test_the_matrix_covers_every_route(running: Service) -> None:
    """Every admin-only route is named here, and nothing named is gone: a new route must be
    placed in the matrix (a missing path parameter in PATH_VALUES fails too)."""
    assert {(m, p) for m, p in routes(running)} >= ADMIN_ONLY
    assert len(routes(running)) >= 19


@pytest.mark.parametrize("who", ["none", "wrong", "revoked", "billing", "admin"])
def test_scopes(running: Service, who: str) -> None:
    tokens = {
        "none": None,
        "wrong": "cdr_" + "x" * 43,
        "revoked": running.tokens["gone"],
        "billing": running.tokens["billing"],
        "admin": running.tokens["admin"],
    }
    for method, path in routes(running):
        response = call(running, method, path, tokens[who])
        if who in ("none", "wrong", "revoked"):
            expected = 401
        elif who == "billing" and (method, path) in ADMIN_ONLY:
            expected = 403
        else:
            assert response.status_code not in (401, 403), (method, path, response.text)
            continue
        assert response.status_code == expected, (method, path, response.text)
        body = response.json()
        assert body["error"] in ("unauthenticated", "forbidden") and body["detail"]


def test_health_stays_open_and_metrics_are_public_by_default(running: Service) -> None:
    assert running.get("/healthz", token="").status_code == 200
    assert running.get("/metrics", token="").status_code == 200
