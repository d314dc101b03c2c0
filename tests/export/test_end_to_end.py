"""The whole flow as a user runs it: syslog in, MN history in, reconcile, export, download."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Service
from tests.reconcile.generator import generate

SCENARIO = generate(seed=3, days=1, calls_per_day=60)


@pytest.mark.parametrize("defer_backlog", ["5000", "-1"], ids=["derived-at-once", "deferred"])
def test_billing_recovers_exactly_the_records_the_mn_lost(
    service: Service, logger_path: str, tmp_path: Path, defer_backlog: str
) -> None:
    # Deferred: the receiver stores raw first; reconciliation must still see every CDR,
    # whether the receiver's catch-up or the reconciliation itself derives them.
    service.env["CDRECON_DEFER_BACKLOG"] = defer_backlog
    service.start()
    # 1. The nodes' syslog arrives live.
    lines = tmp_path / "syslog.txt"
    lines.write_text("".join(body + "\n" for _, _, body in SCENARIO.lines))
    subprocess.run(
        [
            logger_path,
            "-n",
            "127.0.0.1",
            "-P",
            str(service.tcp_port),
            "--tcp",
            "--octet-count",
            "--rfc5424",
            "-t",
            "pexip",
            "-f",
            str(lines),
        ],
        check=True,
        timeout=60,
    )
    assert service.wait_for("cdrecon_messages_stored_total", len(SCENARIO.lines)) == len(
        SCENARIO.lines
    )
    # 2. The restored MN's history is uploaded; a broken upload is refused with reasons.
    broken = [SCENARIO.mn_records[0], {**SCENARIO.mn_records[1], "start_time": "soon"}]
    bad = service.post("/api/v1/history", content=json.dumps(broken))
    assert bad.status_code == 422
    assert [(e["row"], e["field"]) for e in bad.json()["errors"]] == [(2, "start_time")]
    uploaded = service.post(
        "/api/v1/history?filename=mn.json", content=json.dumps(SCENARIO.mn_records)
    )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["participants"] == len(SCENARIO.mn_records)
    # 3. Reconcile the day.
    start, end = SCENARIO.window
    run = service.post(
        "/api/v1/reconciliations", json={"from": start.isoformat(), "until": end.isoformat()}
    )
    assert run.status_code == 201, run.text
    summary = run.json()
    assert summary["counts"]["missing_in_mn"] == len(SCENARIO.lost)
    assert [gap["count"] for gap in summary["gaps"]] == [len(SCENARIO.lost)]
    # 4. Billing creates a batch (retrying with the same key gets the same batch) and
    #    downloads it twice in both formats.
    billing = service.token("billing", "billing")
    created = service.post(
        "/api/v1/exports",
        token=billing,
        json={"run_id": summary["id"]},
        headers={"Idempotency-Key": "recover-2026-11-20"},
    )
    assert created.status_code == 201, created.text
    # Committed before the answer: readable at once.
    assert service.get(f"/api/v1/exports/{created.json()['id']}", token=billing).status_code == 200
    retry = service.post(
        "/api/v1/exports",
        token=billing,
        json={"run_id": summary["id"]},
        headers={"Idempotency-Key": "recover-2026-11-20"},
    )
    assert retry.status_code == 200 and retry.json() == created.json()
    manifest = created.json()
    path = f"/api/v1/exports/{manifest['id']}/download"
    first = service.get(f"{path}?format=csv", token=billing)
    assert first.headers["content-disposition"].endswith(f'{manifest["id"]}.csv"')
    assert service.get(f"{path}?format=csv", token=billing).content == first.content
    assert hashlib.sha256(first.content).hexdigest() == manifest["sha256"]["csv"]
    jsonl = service.get(f"{path}?format=jsonl", token=billing)
    assert hashlib.sha256(jsonl.content).hexdigest() == manifest["sha256"]["jsonl"]
    rows = list(csv.DictReader(io.StringIO(first.content.decode(), newline="")))
    assert sorted(row["id"] for row in rows) == sorted(SCENARIO.lost)
    # The rows carry what the MN would have: times, durations, names.
    calls = {c.pid: c for c in SCENARIO.calls}
    for row in rows:
        call = calls[row["id"]]
        assert row["conference_name"] == call.conference
        assert row["start_time"] == call.start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert int(row["duration"]) == int((call.end - call.start).total_seconds())  # type: ignore[operator]
    # 5. A second batch for the same run holds nothing new: exactly once.
    second = service.post("/api/v1/exports", token=billing, json={"run_id": summary["id"]})
    assert second.json()["record_count"] == 0
    # 6. The audit log says who did what.
    actions = [(e["actor"], e["action"]) for e in service.get("/api/v1/audit").json()["items"]]
    for expected in [
        ("test-admin", "history.import"),
        ("test-admin", "reconciliation.run"),
        ("billing", "export.create"),
        ("billing", "export.download"),
        ("cli", "token.create"),
    ]:
        assert expected in actions
    # 7. The same from the command line: a batch written to a file.
    out = tmp_path / "recovered.jsonl"
    service.cli(
        "export",
        "--run",
        str(summary["id"]),
        "--format",
        "jsonl",
        "-o",
        str(out),
        "--include-exported",
    )
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == sorted(
        SCENARIO.lost
    )
