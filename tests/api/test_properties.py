"""Property test of the whole API: schemathesis generates requests from the OpenAPI document,
valid and invalid, against a running service on SQLite and on PostgreSQL; no answer is a
5xx, every answer matches the document, and every refusal has the one error shape."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import Loaded

# on_database asks for the package's `loaded` by name, which the grouping in tests/conftest.py
# cannot see: join the package's group so that the same worker's service serves these too.
pytestmark = pytest.mark.xdist_group("tests/api")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Deterministic and bounded: the same cases on every run, a few seconds per route.
EXAMPLES = settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def on_database(request: pytest.FixtureRequest) -> Loaded:
    """The loaded service on each database."""
    fixture = "loaded" if request.param == "sqlite" else "loaded_postgresql"
    loaded: Loaded = request.getfixturevalue(fixture)
    return loaded


@pytest.fixture(scope="module")
def operations(on_database: Loaded) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{on_database.service.url}/openapi.json")
    found = [result.ok() for result in schema.include(path_regex="^/api/v1/").get_all_operations()]
    assert len(found) >= 14
    return found


def _check(case: Any, token: str) -> None:
    response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("error"), str) and isinstance(body.get("detail"), str), body
        assert set(body) <= {"error", "detail", "errors"}, body


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error_and_one_error_shape(
    on_database: Loaded, operations: list[Any], mode: GenerationMode
) -> None:
    for operation in operations:

        @EXAMPLES
        @given(case=operation.as_strategy(generation_mode=mode))
        def one(case: Any) -> None:
            _check(case, on_database.admin)

        one()
