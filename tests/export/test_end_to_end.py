"""The whole flow as a user runs it: syslog in, MN history in, reconcile, export, download."""

from __future__ import annotations

import asyncio
import csv
import getpass
import hashlib
import io
import json
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.auth.tokens import Scope, create_token
from app.db.engine import create_engine
from app.db.models import export_records, exports
from app.reconcile.service import reconcile
from tests.conftest import CDRECON, Service, send_with_logger
from tests.reconcile.generator import generate
from tests.reconcile.loading import load, us

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
    send_with_logger(logger_path, service, lines, timeout=60)
    assert service.wait_for("cdrecon_messages_stored_total", len(SCENARIO.lines)) == len(
        SCENARIO.lines
    )
    # 2. The restored MN's history is uploaded; a broken upload is refused with reasons.
    broken = [SCENARIO.mn_records[0], {**SCENARIO.mn_records[1], "start_time": "soon"}]
    bad = service.post("/api/v1/history", content=json.dumps(broken))
    assert bad.status_code == 422
    assert [(e["row"], e["field"]) for e in bad.json()["errors"]] == [(2, "start_time")]
    #    The operator knows when the MN's export was made: its history is complete up to then.
    uploaded = service.post(
        "/api/v1/history",
        params={"filename": "mn.json", "as_of": SCENARIO.as_of.isoformat()},
        content=json.dumps(SCENARIO.mn_records),
    )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["participants"] == len(SCENARIO.mn_records)
    assert (uploaded.json()["as_of"], uploaded.json()["as_of_basis"]) == (
        SCENARIO.as_of.isoformat().replace("+00:00", "Z"),
        "operator",
    )
    # 3. Reconcile the day.
    start, end = SCENARIO.window
    run = service.post(
        "/api/v1/reconciliations", json={"from": start.isoformat(), "until": end.isoformat()}
    )
    assert run.status_code == 201, run.text
    summary = run.json()
    assert summary["counts"]["missing_in_mn"] == len(SCENARIO.lost)
    # Calls that ended after the export was made are not lost: listed apart, never exported.
    after = [pid for pid, status in SCENARIO.expected.items() if status == "after_history"]
    assert summary["counts"]["after_history"] == len(after) > 0
    listed = service.get(f"/api/v1/reconciliations/{summary['id']}/items?status=after_history")
    assert sorted(item["cdr_id"] for item in listed.json()["items"]) == sorted(after)
    assert summary["coverage"]["as_of"]["basis"] == "operator"
    assert [gap["count"] for gap in summary["gaps"]] == [len(SCENARIO.lost)]
    # 4. Billing creates a batch (retrying with the same key gets the same batch) and
    #    downloads it twice in both formats.
    #    Its token from the command line, as an operator makes one (audited in step 6).
    billing = service.cli("token", "create", "billing", "--scope", "billing").splitlines()[-1]
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
    assert not {row["id"] for row in rows} & set(after)
    # The rows carry what the MN would have: times, durations, names.
    calls = {c.pid: c for c in SCENARIO.calls}
    for row in rows:
        call = calls[row["id"]]
        assert row["conference_name"] == call.conference
        assert row["start_time"] == call.start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert int(row["duration"]) == int((call.end - call.start).total_seconds())  # type: ignore[operator]
    # 5. A second batch for the same run is refused, saying where the records went: exactly
    #    once. An unknown run and an empty window are refused too.
    second = service.post("/api/v1/exports", token=billing, json={"run_id": summary["id"]})
    assert second.status_code == 409, second.text
    assert second.json() == {
        "error": "already_exported",
        "detail": f"all {len(SCENARIO.lost)} lost records of run {summary['id']} are already "
        f"in batch {manifest['id']}; pass include_exported to export them again",
    }
    unknown = service.post("/api/v1/exports", token=billing, json={"run_id": 999})
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "no reconciliation run 999")
    backwards = {"from": end.isoformat(), "until": start.isoformat()}
    assert service.post("/api/v1/exports", token=billing, json=backwards).status_code == 422
    # 6. The audit log says who did what.
    actions = [(e["actor"], e["action"]) for e in service.get("/api/v1/audit").json()["items"]]
    for expected in [
        ("test-admin", "history.import"),
        ("test-admin", "reconciliation.run"),
        ("billing", "export.create"),
        ("billing", "export.download"),
        (f"cli:{getpass.getuser()}", "token.create"),
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
    # ... and a run that does not exist is a one-line error and a failed exit.
    refused = subprocess.run(
        [CDRECON, "export", "--run", "999"],
        env={**os.environ, "CDRECON_DATABASE_URL": f"sqlite+aiosqlite:///{service.db_path}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == "Error: no reconciliation run 999\n"


CONCURRENT = 20


@dataclass
class Served:
    """A `cdrecon serve` over a database holding a reconciled day; its billing token, the run."""

    service: Service
    database_url: str
    token: str
    run_id: int

    async def post_at_once(
        self, bodies: list[dict[str, Any]], keys: list[str | None]
    ) -> list[httpx.Response]:
        """POST /api/v1/exports `len(bodies)` times at once, over as many connections."""
        limits = httpx.Limits(max_connections=len(bodies))
        auth = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(
            base_url=self.service.url, limits=limits, timeout=120
        ) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/exports",
                        json=body,
                        headers={**auth, **({"Idempotency-Key": key} if key else {})},
                    )
                    for body, key in zip(bodies, keys, strict=True)
                )
            )

    async def batches(self) -> dict[str, list[str]]:
        """Each stored batch's record ids."""
        engine = create_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(export_records.c.export_id, export_records.c.cdr_id)
                )
                held: dict[str, list[str]] = {}
                for export_id, cdr_id in rows:
                    held.setdefault(export_id, []).append(cdr_id)
                ids = (await conn.execute(select(exports.c.id))).scalars()
                return {export_id: held.get(export_id, []) for export_id in ids}
        finally:
            await engine.dispose()


@pytest.fixture
async def served(database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    engine = create_engine(database_url)
    start, end = SCENARIO.window
    try:
        await load(engine, SCENARIO)
        summary = await reconcile(engine, us(start), us(end))
        async with engine.begin() as conn:
            token = await create_token(conn, "billing", Scope.BILLING)
    finally:
        await engine.dispose()
    service = Service(tmp_path, env={"CDRECON_DATABASE_URL": database_url})
    service.start()
    yield Served(service, database_url, token, int(summary["id"]))
    service.stop()


async def test_twenty_retries_at_once_make_one_batch(served: Served) -> None:
    answers = await served.post_at_once(
        [{"run_id": served.run_id}] * CONCURRENT, ["billing-2026-11-20"] * CONCURRENT
    )
    assert sorted(a.status_code for a in answers) == [200] * (CONCURRENT - 1) + [201], [
        a.text for a in answers if a.status_code >= 500
    ]
    assert len({a.json()["id"] for a in answers}) == 1
    batches = await served.batches()
    assert sorted(sorted(ids) for ids in batches.values()) == [sorted(SCENARIO.lost)]


async def test_twenty_different_exports_at_once_hold_each_record_once(served: Served) -> None:
    start, end = SCENARIO.window
    middle = start + (end - start) / 2
    # Half ask for the run's lost records, half for windows that overlap them and each other.
    bodies: list[dict[str, Any]] = [
        {"run_id": served.run_id}
        if n % 2
        else {"from": (start + (end - start) * n / 40).isoformat(), "until": middle.isoformat()}
        for n in range(CONCURRENT)
    ]
    answers = await served.post_at_once(bodies, [f"key-{n}" for n in range(CONCURRENT)])
    assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers]
    created = [a.json() for a in answers if a.status_code == 201]
    batches = await served.batches()
    assert sorted(batches) == sorted(m["id"] for m in created)
    exported = [cdr_id for ids in batches.values() for cdr_id in ids]
    assert len(exported) == len(set(exported))
    assert set(SCENARIO.lost) <= set(exported)
    assert all(ids for ids in batches.values())
    for answer in answers:
        if answer.status_code == 409:
            assert "already in batch" in answer.json()["detail"]
