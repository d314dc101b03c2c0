"""The reconciliation and billing forms over real HTTP: each works for the scope it is for,
refuses the other and other sites, and says what to correct next to the field while
changing nothing."""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from typing import Any

import httpx
import pytest

from app.web.billing import RUNS_CONSIDERED
from tests.conftest import Service
from tests.web.conftest import NARROW, Browser, Loaded, no_sideways_scroll

CROSS_SITE = {"Sec-Fetch-Site": "cross-site"}


def _get(loaded: Loaded, path: str, token: str | None) -> httpx.Response:
    cookies = {"cdrecon_token": token} if token else {}
    return httpx.get(loaded.service.url + path, cookies=cookies, timeout=30)


def _post(loaded: Loaded, path: str, token: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(
        loaded.service.url + path, cookies={"cdrecon_token": token}, timeout=60, **kwargs
    )


def _field_error(page: httpx.Response, name: str) -> str:
    found = re.search(rf'id="{name}-error"[^>]*>([^<]*)<', page.text)
    assert found, f"no message next to {name}"
    return found.group(1)


def _run_ids(loaded: Loaded) -> list[int]:
    with closing(sqlite3.connect(loaded.service.db_path)) as db:
        return [row[0] for row in db.execute("select id from reconciliations order by id")]


def _batch_ids(loaded: Loaded) -> list[str]:
    with closing(sqlite3.connect(loaded.service.db_path)) as db:
        return [row[0] for row in db.execute("select id from exports order by id")]


def _history(loaded: Loaded) -> tuple[int, int]:
    """MN records and history imports stored."""
    with closing(sqlite3.connect(loaded.service.db_path)) as db:
        records = db.execute("select count(*) from mn_participants").fetchone()[0]
        imports = db.execute("select count(*) from history_coverage").fetchone()[0]
    return int(records), int(imports)


def test_every_page_is_for_its_scopes_and_asks_anyone_else_to_sign_in(loaded: Loaded) -> None:
    for path in ("/runs", "/billing", f"/runs/{loaded.run['id']}"):
        for token in (loaded.admin, loaded.billing):
            assert _get(loaded, path, token).status_code == 200, path
        anonymous = _get(loaded, path, None)
        assert anonymous.status_code == 401 and 'id="login"' in anonymous.text
    admin, billing = _get(loaded, "/runs", loaded.admin), _get(loaded, "/runs", loaded.billing)
    assert 'id="run-form"' in admin.text and 'id="history-form"' in admin.text
    assert 'id="run-form"' not in billing.text and 'id="history-form"' not in billing.text
    assert "needs an admin token" in billing.text
    # Both may make batches, as in the API.
    for token in (loaded.admin, loaded.billing):
        assert 'id="batch-form"' in _get(loaded, "/billing", token).text


def test_billing_may_not_start_runs_or_import_history(loaded: Loaded) -> None:
    start, end = loaded.scenario.window
    runs = _run_ids(loaded)
    refused = _post(
        loaded,
        "/runs",
        loaded.billing,
        data={"from": start.isoformat(), "until": end.isoformat(), "tolerance": "2s"},
    )
    assert refused.status_code == 403 and 'id="forbidden"' in refused.text
    upload = _post(
        loaded,
        "/history",
        loaded.billing,
        files={"file": ("mn.json", json.dumps(loaded.scenario.mn_records[:1]))},
    )
    assert upload.status_code == 403 and 'id="forbidden"' in upload.text
    assert _run_ids(loaded) == runs


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"from": "", "until": "2026-11-21T00:00Z"}, "from", "Required"),
        ({"from": "yesterday", "until": "2026-11-21T00:00Z"}, "from", "Not a time"),
        ({"from": "2026-11-21T00:00Z", "until": "2026-11-20T00:00Z"}, "until", "after the start"),
        (
            {"from": "2026-11-20T00:00Z", "until": "2026-11-21T00:00Z", "tolerance": "2 hours"},
            "tolerance",
            "not a duration",
        ),
        (
            {"from": "2026-11-20T00:00Z", "until": "2026-11-21T00:00Z", "tolerance": "61m"},
            "tolerance",
            "at most 3600",
        ),
        # The MN history is complete only up to 2026: refused unless forced, saying how.
        ({"from": "2030-01-01T00:00Z", "until": "2030-01-02T00:00Z"}, "force", "No MN history"),
    ],
)
def test_a_wrong_run_form_says_what_to_correct_and_starts_nothing(
    loaded: Loaded, fields: dict[str, str], field: str, words: str
) -> None:
    runs = _run_ids(loaded)
    page = _post(loaded, "/runs", loaded.admin, data=fields)
    assert page.status_code == 200
    assert words in _field_error(page, field)
    assert f'value="{fields["until"]}"' in page.text  # what was typed stays
    assert _run_ids(loaded) == runs


def test_the_run_form_starts_a_run_and_other_sites_cannot(loaded: Loaded) -> None:
    start, end = loaded.scenario.window
    fields = {"from": start.isoformat(), "until": end.isoformat(), "tolerance": "1500ms"}
    runs = _run_ids(loaded)
    forged = _post(loaded, "/runs", loaded.admin, data=fields, headers=CROSS_SITE)
    assert forged.status_code == 403 and _run_ids(loaded) == runs
    started = _post(loaded, "/runs", loaded.admin, data=fields)
    assert started.status_code == 303
    [new] = set(_run_ids(loaded)) - set(runs)
    assert started.headers["location"] == f"/runs/{new}"
    summary = loaded.service.get(f"/api/v1/reconciliations/{new}").json()
    assert summary["tolerance_seconds"] == 1.5 and summary["created_by"] == "test-admin"
    audit = loaded.service.get("/api/v1/audit?limit=5").json()["items"]
    assert any(e["action"] == "reconciliation.run" and e["target"] == str(new) for e in audit)


def test_a_refused_history_upload_names_the_bad_record_and_stores_nothing(
    loaded: Loaded,
) -> None:
    before = _history(loaded)
    bad = [{**loaded.scenario.mn_records[0], "start_time": "not a time"}]
    page = _post(loaded, "/history", loaded.admin, files={"file": ("bad.json", json.dumps(bad))})
    assert page.status_code == 200
    message = _field_error(page, "file")
    assert "Refused" in message and "record 1" in message and "start_time" in message
    when = _post(
        loaded,
        "/history",
        loaded.admin,
        files={"file": ("mn.json", json.dumps(loaded.scenario.mn_records))},
        data={"as_of": "soon"},
    )
    assert "Not a time" in _field_error(when, "as_of")
    assert 'value="soon"' in when.text
    future = _post(
        loaded,
        "/history",
        loaded.admin,
        files={"file": ("mn.json", json.dumps(loaded.scenario.mn_records))},
        data={"as_of": "2999-01-01T00:00Z"},
    )
    assert "is in the future" in _field_error(future, "as_of")
    empty = _post(loaded, "/history", loaded.admin, files={"file": ("empty.json", b"")})
    assert "empty upload" in _field_error(empty, "file")
    assert _history(loaded) == before


def test_a_batch_the_api_would_refuse_is_refused_on_the_form_too(loaded: Loaded) -> None:
    batches = _batch_ids(loaded)
    exported = loaded.export["id"]
    for fields, words in (
        ({"source": "run", "run_id": str(loaded.run["id"])}, f"already in batch {exported}"),
        ({"source": "run", "run_id": "999999"}, "no reconciliation run 999999"),
        (
            {"source": "window", "from": "2026-11-21T00:00Z", "until": "2026-11-20T00:00Z"},
            "the window is empty",
        ),
        ({"source": "window", "from": "1999-01-01T00:00Z", "until": "1999-01-02T00:00Z"}, "no "),
    ):
        page = _post(loaded, "/billing/batches", loaded.billing, data=fields)
        assert page.status_code == 200
        assert "No batch was made" in page.text and words in page.text, fields
    page = _post(loaded, "/billing/batches", loaded.billing, data={"source": "run", "run_id": ""})
    assert "Choose a run" in _field_error(page, "run_id")
    page = _post(
        loaded,
        "/billing/batches",
        loaded.billing,
        data={"source": "run", "run_id": "1", "min_duration": "-5"},
    )
    assert "greater than or equal to 0" in _field_error(page, "min_duration")
    assert _batch_ids(loaded) == batches


def test_a_resubmitted_batch_form_makes_one_batch(loaded: Loaded) -> None:
    start, end = loaded.scenario.window
    fields = {
        "source": "window",
        "from": start.isoformat(),
        "until": end.isoformat(),
        "protocol": "SIP",
        "key": "form-key-1",
    }
    batches = _batch_ids(loaded)
    forged = _post(loaded, "/billing/batches", loaded.billing, data=fields, headers=CROSS_SITE)
    assert forged.status_code == 403 and _batch_ids(loaded) == batches
    first = _post(loaded, "/billing/batches", loaded.billing, data=fields)
    again = _post(loaded, "/billing/batches", loaded.billing, data=fields)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    [made] = set(_batch_ids(loaded)) - set(batches)
    assert first.headers["location"] == f"/billing?batch={made}"
    manifest = loaded.service.get(f"/api/v1/exports/{made}", token=loaded.billing).json()
    assert manifest["filters"]["protocol"] == ["SIP"] and manifest["record_count"] > 0
    page = _get(loaded, first.headers["location"], loaded.billing)
    assert f'id="batch-{made}"' in page.text and 'id="batch-created"' in page.text


def test_an_empty_batch_is_never_listed_as_a_delivery(loaded: Loaded) -> None:
    # Batches are never made empty now; one left by an older cdrecon is put in by hand.
    with closing(sqlite3.connect(loaded.service.db_path)) as db, db:
        db.execute(
            "insert into exports (id, created_us, created_by, source, filters, record_count,"
            " total_duration, sha256_csv, sha256_jsonl) values"
            " ('exp_empty_old', 1, 'old', '{\"run_id\": 1}', '{}', 0, 0, '', '')"
        )
    page = _get(loaded, "/billing", loaded.billing).text
    deliveries, _, apart = page.partition('id="empty-batches"')
    assert 'id="batch-exp_empty_old"' not in deliveries
    assert 'id="batch-exp_empty_old"' in apart and "not deliveries" in apart
    assert f'id="batch-{loaded.export["id"]}"' in deliveries


def test_the_pages_fit_400_px_and_log_no_console_error(browser: Browser, loaded: Loaded) -> None:
    browser.sign_in(loaded.admin)
    browser.driver.set_window_size(NARROW, 900)
    for path, landmark in (
        ("/runs", "#run-form"),
        ("/billing", "#batch-form"),
        (f"/runs/{loaded.run['id']}", "#timeline"),
    ):
        browser.open(path)
        browser.wait_for(landmark)
        no_sideways_scroll(browser)
        assert browser.console_errors() == [], path


def test_billing_says_when_older_runs_are_not_looked_at(service: Service) -> None:
    # What remains to bill is read from the newest runs only; past them the page must say so
    # rather than answer "nothing remains" for records lost only in an older run.
    service.start()
    window = {"from": "2026-03-02T00:00:00Z", "until": "2026-03-03T00:00:00Z", "force": True}
    assert service.post("/api/v1/reconciliations", json=window).status_code == 201
    billing = service.token("billing", "billing")
    cookies = {"cdrecon_token": billing}
    page = httpx.get(f"{service.url}/billing", cookies=cookies, timeout=30, verify=False)
    assert page.status_code == 200 and 'id="older-runs"' not in page.text
    with closing(sqlite3.connect(service.db_path)) as db, db:
        columns = "created_us, created_by, from_us, until_us, tolerance_us, status, summary"
        copy = f"insert into reconciliations ({columns}) select {columns} from reconciliations"
        for _ in range(RUNS_CONSIDERED):
            db.execute(f"{copy} where id = 1")
    page = httpx.get(f"{service.url}/billing", cookies=cookies, timeout=30, verify=False)
    assert page.status_code == 200
    assert f"Only the newest {RUNS_CONSIDERED} runs" in page.text
