"""Integers past 64 bits in every integer parameter and body field answer 422 in the
`{"error","detail"}` shape (in a cursor, 400 invalid_cursor), on SQLite and PostgreSQL
(issue 12): they are bounded before they reach a database column, where PostgreSQL would
fail the request with a 500."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Service, service_on

HUGE = (2**63, -(2**63) - 1, 10**30)
HISTORY = Path(__file__).parents[1] / "fixtures/history"
FIXTURE = HISTORY / "history_participant_object.pexip-docs-example.json"
WINDOW = {"from": "2026-03-02T00:00:00Z", "until": "2026-03-03T00:00:00Z"}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """One serve on each database for the module: every request here is refused before it
    changes anything but a run and one history record, which no other test counts."""
    with service_on(request.param, tmp_path_factory.mktemp("large-integers")) as service:
        yield service


def is_integer(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "integer" or any(
        part.get("type") == "integer" for part in schema.get("anyOf", ())
    )


def integer_parameters(service: Service) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(method, path, parameter, all parameters) for each integer path or query parameter."""
    found = []
    for path, operations in service.get("/openapi.json").json()["paths"].items():
        for method, operation in operations.items():
            parameters = operation.get("parameters", [])
            for parameter in parameters:
                if parameter["in"] in ("path", "query") and is_integer(parameter["schema"]):
                    found.append((method, path, parameter["name"], operation))
    return found


def assert_refused(response: httpx.Response, what: str) -> None:
    assert response.status_code == 422, f"{what}: {response.status_code} {response.text[:200]}"
    assert response.json()["error"] == "invalid_input", what


def cursor(key: list[int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def test_huge_integers_in_parameters_and_cursors_answer_422(served: Service) -> None:
    parameters = integer_parameters(served)
    # The probe must find the parameters it is about; a renamed route must not empty it.
    assert {name for _, _, name, _ in parameters} >= {"limit", "run_id"}
    run = served.post("/api/v1/reconciliations", json={**WINDOW, "force": True})
    assert run.status_code == 201, run.text
    paged = set()

    def ids(match: re.Match[str]) -> str:
        """The run made above; any other path parameter names a row that need not exist:
        a cursor is refused before anything is looked up."""
        return str(run.json()["id"]) if match.group(1) == "run_id" else "1"

    for method, path, name, operation in parameters:
        for value in HUGE:
            url, query = path, {}
            for parameter in operation["parameters"]:
                if parameter["in"] == "path":
                    given = value if parameter["name"] == name else 1
                    url = url.replace(f"{{{parameter['name']}}}", str(given))
                elif parameter["name"] == name:
                    query[name] = str(value)
            if any(parameter["name"] == "cursor" for parameter in operation["parameters"]):
                paged.add(re.sub(r"\{(\w+)\}", ids, path))
            headers = {"Authorization": f"Bearer {served.token()}"}
            response = httpx.request(
                method, served.url + url, params=query, headers=headers, timeout=30
            )
            assert_refused(response, f"{method} {url} {name}={value}")
    for url in paged:
        for key in ([2**63], [1, 10**30], [-(2**63) - 1, 1]):
            # A cursor is opaque: any cursor we did not hand out is refused as one.
            response = served.get(f"{url}?cursor={cursor(key)}")
            assert response.status_code == 400, f"{url} cursor={key}: {response.text[:200]}"
            assert response.json()["error"] == "invalid_cursor"


@pytest.mark.parametrize("value", HUGE)
def test_huge_integers_in_bodies_answer_422(served: Service, value: int) -> None:
    assert_refused(
        served.post("/api/v1/reconciliations", json={**WINDOW, "tolerance": value}), "tolerance"
    )
    for field in ("run_id", "min_duration"):
        body = {"run_id": 1, field: value}
        assert_refused(served.post("/api/v1/exports", json=body), f"exports {field}")
    record = json.loads(FIXTURE.read_text())
    for field in ("duration", "bandwidth", "remote_port", "license_count"):
        upload = json.dumps({"objects": [{**record, field: value}]})
        response = served.post(
            "/api/v1/history?filename=mn.json",
            content=upload,
            headers={"Content-Type": "application/json"},
        )
        assert_refused(response, f"history {field}")
    # Nothing half-imported: the same record with sane values still goes in.
    response = served.post(
        "/api/v1/history?filename=mn.json",
        content=json.dumps({"objects": [record]}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
