"""The API's contract: every list pages one way, every error has one shape, and the OpenAPI
document says both."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.conftest import Loaded

# Each list, the token that may read it, and what identifies one of its items.
LISTS = {
    "/api/v1/cdrs": ("billing", "id"),
    "/api/v1/reconciliations/{run}/items": ("billing", "seq"),
    "/api/v1/exports": ("billing", "id"),
    "/api/v1/audit": ("admin", "id"),
}


def _path(template: str, loaded: Loaded) -> str:
    return template.format(run=loaded.run["id"])


def _token(loaded: Loaded, who: str) -> str:
    return loaded.admin if who == "admin" else loaded.billing


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == code and isinstance(body["detail"], str) and body["detail"]
    return body


@pytest.mark.parametrize("template", LISTS)
def test_every_list_pages_with_items_and_next_cursor(loaded: Loaded, template: str) -> None:
    who, key = LISTS[template]
    path, token = _path(template, loaded), _token(loaded, who)
    whole = loaded.service.get(f"{path}?limit=500", token=token).json()
    assert set(whole) == {"items", "next_cursor"} and whole["next_cursor"] is None
    assert len(whole["items"]) >= 3, "too few items to page through"
    walked, cursor, pages = [], None, 0
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = loaded.service.get(path + query, token=token).json()
        assert len(page["items"]) <= 2
        walked += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert [item[key] for item in walked] == [item[key] for item in whole["items"]]
    assert pages == -(-len(walked) // 2)


@pytest.mark.parametrize("template", LISTS)
def test_a_cursor_that_is_not_ours_is_refused(loaded: Loaded, template: str) -> None:
    who, _ = LISTS[template]
    path, token = _path(template, loaded), _token(loaded, who)
    for cursor in ("nonsense", "WzEsMl0", "WyJ4Il0", "Wzk5OTk5OTk5OTk5OTk5OTk5OTk5XQ"):
        response = loaded.service.get(f"{path}?cursor={cursor}", token=token)
        _assert_error(response, 400, "invalid_cursor")


def test_errors_have_one_shape(loaded: Loaded) -> None:
    service = loaded.service
    _assert_error(service.get("/api/v1/cdrs/nobody"), 404, "not_found")
    _assert_error(service.get("/api/v1/reconciliations/999999"), 404, "not_found")
    _assert_error(service.get("/api/v1/exports/exp_none"), 404, "not_found")
    _assert_error(service.get("/api/v1/no-such-route"), 404, "not_found")
    _assert_error(service.get("/api/v1/cdrs?limit=0"), 422, "invalid_input")
    _assert_error(service.get("/api/v1/reconciliations/abc"), 422, "invalid_input")
    _assert_error(service.post("/api/v1/stats", json={}), 405, "method_not_allowed")
    _assert_error(service.get("/api/v1/stats", token=""), 401, "unauthenticated")
    _assert_error(service.get("/api/v1/audit", token=loaded.billing), 403, "forbidden")
    body = _assert_error(
        service.post("/api/v1/reconciliations", json={"from": "yesterday"}), 422, "invalid_input"
    )
    assert "body.from" in body["detail"] and "body.until" in body["detail"]
    bad_json = service.post(
        "/api/v1/reconciliations",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    _assert_error(bad_json, 422, "invalid_input")


def test_the_openapi_document_declares_every_response(loaded: Loaded) -> None:
    spec = loaded.service.get("/openapi.json", token="").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert set(schemas["ErrorBody"]["required"]) == {"error", "detail"}
    for path, operations in spec["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                if status.startswith("2"):
                    # Only a download is not JSON; everything else names its model.
                    assert content, where
                    if "application/json" in content:
                        assert "$ref" in str(content["application/json"]["schema"]), where
                else:
                    ref = content["application/json"]["schema"]["$ref"]
                    assert ref.rsplit("/", 1)[-1] in ("ErrorBody", "HistoryRejected"), where
            assert {"401", "422", "4XX", "5XX"} <= set(operation["responses"]), where
    for name in ("/api/v1/cdrs", "/api/v1/audit", "/api/v1/exports"):
        ref = spec["paths"][name]["get"]["responses"]["200"]["content"]["application/json"]
        page = schemas[ref["schema"]["$ref"].rsplit("/", 1)[-1]]
        assert set(page["properties"]) == {"items", "next_cursor"}


def test_reconciliation_summaries_and_manifests_keep_their_fields(loaded: Loaded) -> None:
    run = loaded.service.get(f"/api/v1/reconciliations/{loaded.run['id']}").json()
    assert run == loaded.run
    assert set(run["counts"]) == {
        "matched",
        "missing_in_mn",
        "missing_in_syslog",
        "mismatched",
        "outside_retention",
        "after_history",
        "unconfirmed",
        "open",
        "excluded",
    }
    assert set(run["coverage"]) == {"oldest_record", "as_of", "forced", "warning"}
    assert set(run["gaps"][0]) >= {"from", "until", "count"}
    manifest = loaded.service.get("/api/v1/exports", token=loaded.billing).json()["items"][0]
    assert manifest["source"] == {"run_id": loaded.run["id"], "status": "missing_in_mn"}
    assert set(manifest["sha256"]) == {"csv", "jsonl"}
    again = loaded.service.get(f"/api/v1/exports/{manifest['id']}", token=loaded.billing)
    assert again.json() == manifest
