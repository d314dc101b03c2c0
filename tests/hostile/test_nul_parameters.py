"""A NUL in a request's path or query string answers 422 in the one error shape on SQLite and
PostgreSQL, before any route sees it: PostgreSQL refuses NUL in text, so a search for it used
to answer 500 there (found by the schemathesis property test on `/api/v1/cdrs?alias=`)."""

from __future__ import annotations

from tests.conftest import Service

QUERIES = [
    "/api/v1/cdrs?alias=a%00b",
    "/api/v1/cdrs?conference=%00",
    "/api/v1/cdrs?protocol=sip%00",
    "/api/v1/cdrs/abc%00def",
    "/cdrs?alias=%00",
]


def test_nul_in_a_path_or_query_answers_422(served: Service) -> None:
    for query in QUERIES:
        answer = served.get(query)
        assert answer.status_code == 422, f"{query}: {answer.status_code} {answer.text[:200]}"
        assert answer.json()["error"] == "invalid_input", query
    # The same routes without NUL still answer.
    assert served.get("/api/v1/cdrs?alias=ab").status_code == 200
