"""Uploading MN history over HTTP: a raw body, or a multipart form as `curl -F` sends it."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Service

FIXTURES = Path(__file__).parents[1] / "fixtures" / "history"
PARTICIPANT = FIXTURES / "history_participant_object.pexip-docs-example.json"
CSV = FIXTURES / "participants.export-csv.csv"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("history-upload"))
    service.start()
    yield service
    service.stop()


def _imports(service: Service) -> int:
    audit = service.get("/api/v1/audit?limit=1000").json()["items"]
    return sum(entry["action"] == "history.import" for entry in audit)


def test_curl_form_upload_is_stored_under_the_sent_file_name(
    running: Service, tmp_path: Path
) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (apt-get install curl)")
    upload = tmp_path / "participants.json"
    upload.write_bytes(PARTICIPANT.read_bytes())
    done = subprocess.run(
        [
            curl,
            "--silent",
            "--show-error",
            "-H",
            f"Authorization: Bearer {running.token()}",
            "-F",
            f"file=@{upload}",
            f"{running.url}/api/v1/history",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == {
        "source": "upload:participants.json",
        "participants": 1,
        "conferences": 0,
        # No `as_of` given: the history is complete up to the record's end_time.
        "as_of": "2015-04-02T09:55:33.141261Z",
        "as_of_basis": "newest end_time",
    }


def test_form_upload_of_a_csv_and_an_explicit_name(running: Service) -> None:
    response = running.post(
        "/api/v1/history?filename=export.csv",
        files={"file": ("ignored.csv", CSV.read_bytes(), "text/csv")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["source"] == "upload:export.csv"
    assert response.json()["participants"] >= 1


def test_raw_body_upload_still_works(running: Service) -> None:
    response = running.post("/api/v1/history", content=PARTICIPANT.read_bytes())
    assert response.status_code == 200, response.text
    assert response.json()["source"] == "upload:upload"


@pytest.mark.parametrize(
    "send",
    [
        {"data": {"other": "field"}, "files": {"x": ("a.json", b"[]")}},
        {"files": {"file": ("empty.json", b"  ")}},
        {
            "content": b"--b\r\nContent-Disposition: form-data; name=file\r\n\r\nx",
            "headers": {"Content-Type": "multipart/form-data; boundary=b"},
        },
    ],
    ids=["no-file-field", "empty-file", "broken-form"],
)
def test_bad_form_uploads_are_refused_in_the_error_shape(
    running: Service, send: dict[str, object]
) -> None:
    before = _imports(running)
    response = running.post("/api/v1/history", **send)
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["detail"]
    assert _imports(running) == before
