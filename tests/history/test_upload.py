"""Uploading MN history over HTTP: a raw body, or a multipart form as `curl -F` sends it."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import bindparam, text

from app.db.engine import create_engine
from app.history.upload import IN_PROCESS_BYTES
from parsers.history_documents import RECORD_MAX
from tests.conftest import Service, service_on

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
        "duplicates": 0,
        "duplicate_ids": [],
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


def _participants(count: int, *, first: int = 0) -> list[dict[str, object]]:
    """`count` copies of the documented participant record, with ids first.. on."""
    record = json.loads(PARTICIPANT.read_text())
    return [{**record, "id": f"upload-{first + n:08d}"} for n in range(count)]


def _count(database_url: str, table: str) -> int:
    async def count() -> int:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(count())


CAP = 4_000_000


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, str]]:
    """A real serve on each database, with a small upload cap; its tests count what they add.
    PostgreSQL's is a database of its own: the session's is emptied by other tests'
    fixtures, and holds their tokens until then."""
    with service_on(
        request.param,
        tmp_path_factory.mktemp("upload-limits"),
        env={"CDRECON_HISTORY_UPLOAD_MAX_BYTES": str(CAP)},
    ) as service:
        yield service, service.database_url


def test_values_postgresql_cannot_hold_are_refused_on_both_databases(
    served: tuple[Service, str],
) -> None:
    on_each_database, database_url = served
    service = on_each_database
    before = _count(database_url, "mn_participants")
    header = "id,display_name,end_time\r\n"
    refused = [
        {"content": (header + "p1,Al\x00ice,2026-01-01T10:00:00\r\n").encode()},
        {"content": json.dumps([{"id": "x" * 10_000, "display_name": "A"}]).encode()},
        {
            "content": b'--b\r\nContent-Disposition: form-data; name="file"; '
            b'filename="bad\x00name.json"\r\n\r\n' + PARTICIPANT.read_bytes() + b"\r\n--b--\r\n",
            "headers": {"Content-Type": "multipart/form-data; boundary=b"},
        },
        {"content": PARTICIPANT.read_bytes(), "params": {"filename": "bad\x00name"}},
        {"content": PARTICIPANT.read_bytes(), "params": {"filename": "n" * 256}},
    ]
    for send in refused:
        response = service.post("/api/v1/history", **send)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid_input"
    assert _count(database_url, "mn_participants") == before


def test_an_id_twice_is_stored_once_and_reported(
    served: tuple[Service, str],
) -> None:
    on_each_database, database_url = served
    before = _count(database_url, "mn_participants")
    records = _participants(3, first=10_000) + _participants(1, first=10_001)
    response = on_each_database.post("/api/v1/history", json=records)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["participants"], body["duplicates"], body["duplicate_ids"]) == (
        3,
        1,
        ["upload-00010001"],
    )
    assert _count(database_url, "mn_participants") == before + 3


def test_a_large_upload_is_stored_whole_or_not_at_all(
    served: tuple[Service, str],
) -> None:
    on_each_database, database_url = served
    # Past IN_PROCESS_BYTES, so parsed in a worker process and stored in many transactions.
    before = _count(database_url, "mn_participants")
    coverage = _count(database_url, "history_coverage")
    records = _participants(1500, first=20_000)
    document = json.dumps(records).encode()
    assert IN_PROCESS_BYTES < len(document) < CAP
    bad = json.dumps([*records, {"id": "broken", "duration": "long"}]).encode()
    refused = on_each_database.post("/api/v1/history", content=bad)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["id"] == "broken"
    assert _count(database_url, "mn_participants") == before

    stored = on_each_database.post("/api/v1/history", content=document)
    assert stored.status_code == 200, stored.text
    assert stored.json()["participants"] == 1500
    assert stored.json()["as_of"] == "2015-04-02T09:55:33.141261Z"
    assert _count(database_url, "mn_participants") == before + 1500
    assert _count(database_url, "history_coverage") == coverage + 1


def test_an_upload_over_the_cap_is_refused_before_it_is_read(
    served: tuple[Service, str],
) -> None:
    on_each_database, database_url = served
    before = _count(database_url, "mn_participants")
    too_large = b" " * (CAP + 1)
    declared = on_each_database.post("/api/v1/history", content=too_large)
    assert declared.status_code == 413, declared.text
    assert "CDRECON_HISTORY_UPLOAD_MAX_BYTES" in declared.json()["detail"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(CAP // 65536 + 2):
            yield b" " * 65536

    streamed = on_each_database.post("/api/v1/history", content=chunked())
    assert streamed.status_code == 413, streamed.text
    form = on_each_database.post("/api/v1/history", files={"file": ("big.json", too_large)})
    assert form.status_code == 413, form.text

    def chunked_form() -> Iterator[bytes]:  # a form without Content-Length
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.json"\r\n\r\n'
        yield from chunked()
        yield b"\r\n--b--\r\n"

    streamed_form = on_each_database.post(
        "/api/v1/history",
        content=chunked_form(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert streamed_form.status_code == 413, streamed_form.text
    assert _count(database_url, "mn_participants") == before


def _stored_ids(database_url: str, ids: list[str]) -> dict[str, str]:
    async def read() -> dict[str, str]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT id, display_name FROM mn_participants WHERE id IN :ids"
                    ).bindparams(bindparam("ids", expanding=True)),
                    {"ids": ids},
                )
                return {str(i): str(name) for i, name in rows}
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_ids_repeated_across_batches_are_stored_once_and_each_named_once(
    served: tuple[Service, str],
) -> None:
    on_each_database, database_url = served
    before = _count(database_url, "mn_participants")
    records = _participants(1500, first=40_000)
    # "…40010" three times, in three batches of 500; "…40020" twice in the first batch.
    records[700] = {**records[10], "display_name": "second copy"}
    records[1400] = {**records[10], "display_name": "third copy"}
    records[30] = {**records[20], "display_name": "last copy"}
    document = json.dumps(records).encode()
    assert len(document) > IN_PROCESS_BYTES  # through the worker, batch by batch
    response = on_each_database.post("/api/v1/history", content=document)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["participants"], body["duplicates"], body["duplicate_ids"]) == (
        1497,
        2,
        ["upload-00040020", "upload-00040010"],  # in the order their second copy came
    )
    assert _count(database_url, "mn_participants") == before + 1497
    assert _stored_ids(database_url, ["upload-00040010", "upload-00040020"]) == {
        "upload-00040010": "third copy",
        "upload-00040020": "last copy",
    }


def test_a_document_of_many_bad_records_counts_them_all_and_lists_the_first_thousand(
    served: tuple[Service, str],
) -> None:
    on_each_database, database_url = served
    before = _count(database_url, "mn_participants")
    bad = [{"id": f"bad-{n}", "duration": "long"} for n in range(1500)]
    response = on_each_database.post("/api/v1/history", json=bad)
    assert response.status_code == 422, response.text
    body = response.json()
    assert "1500 bad record(s); nothing imported" in body["detail"]
    assert len(body["errors"]) == 1000
    assert body["errors"][999]["id"] == "bad-999"
    assert _count(database_url, "mn_participants") == before


def _service_rss_mb(pid: int) -> float:
    """VmRSS of `pid` and every process under it (an upload's worker), in MiB."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue  # ended meanwhile
        # A process that has ended but is not yet reaped has no VmRSS line: nothing to add.
        total += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")),
            0,
        )
    return total / 1024


# The memory test's upload: about 30 MB. The service (serve, its upload worker and the
# multiprocessing resource tracker) grew by about 140 MiB while storing it, whatever its size
# (the worker's imports and SQLite page cache); reading it whole (before the readers
# streamed) grew it by about 255 MiB, and more with every MB.
LARGE_UPLOAD_RECORDS = 13_500
RSS_GROWTH_MB = 200


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_large_upload_is_stored_without_the_service_growing_with_it(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    service = Service(tmp_path_factory.mktemp("upload-memory"))
    service.start()
    try:
        record = json.loads(PARTICIPANT.read_text())
        upload = tmp_path / "large.json"
        with upload.open("w") as out:
            out.write(json.dumps({"meta": {"total_count": LARGE_UPLOAD_RECORDS}})[:-1])
            out.write(', "objects": [')
            for n in range(LARGE_UPLOAD_RECORDS):
                out.write(("," if n else "") + json.dumps({**record, "id": f"large-{n:08d}"}))
            out.write("]}")
        assert upload.stat().st_size > 28_000_000
        assert service.process is not None
        pid = service.process.pid
        idle = _service_rss_mb(pid)
        peak = idle
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.02):
                peak = max(peak, _service_rss_mb(pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            with upload.open("rb") as body:
                response = service.post("/api/v1/history", content=body)
        finally:
            done.set()
            sampler.join()
        assert response.status_code == 200, response.text
        assert response.json()["participants"] == LARGE_UPLOAD_RECORDS
        assert _count(f"sqlite+aiosqlite:///{service.db_path}", "mn_participants") == (
            LARGE_UPLOAD_RECORDS
        )
        print(f"service RSS {idle:.0f} MiB idle, {peak:.0f} MiB at most during the upload")
        assert peak - idle < RSS_GROWTH_MB, (idle, peak)
    finally:
        service.stop()


def test_a_record_over_a_mebibyte_is_refused_whole(served: tuple[Service, str]) -> None:
    on_each_database, database_url = served
    before = _count(database_url, "mn_participants")
    records = _participants(2, first=60_000)
    records[1]["vendor"] = "v" * (RECORD_MAX + 1)
    response = on_each_database.post("/api/v1/history", json=records)
    assert response.status_code == 422, response.text
    assert f"a JSON value longer than {RECORD_MAX:,} characters" in response.json()["detail"]
    assert _count(database_url, "mn_participants") == before
