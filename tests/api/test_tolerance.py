"""Tolerance means the same to `POST /api/v1/reconciliations` and `cdrecon reconcile`."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.api.conftest import Loaded
from tests.conftest import CDRECON

WINDOW = {"from": "2026-11-20T00:00:00Z", "until": "2026-11-21T00:00:00Z"}


@pytest.mark.parametrize(
    ("given", "seconds"), [("500ms", 0.5), ("2s", 2.0), ("1.5", 1.5), (3, 3.0), ("1m", 60.0)]
)
def test_api_and_cli_accept_the_same_durations(
    loaded: Loaded, given: str | float, seconds: float
) -> None:
    run = loaded.service.post("/api/v1/reconciliations", json={**WINDOW, "tolerance": given})
    assert run.status_code == 201, run.text
    assert run.json()["tolerance_seconds"] == seconds
    printed = loaded.service.cli(
        "reconcile", "--from", WINDOW["from"], "--until", WINDOW["until"], "--tolerance", str(given)
    )
    assert json.loads(printed)["tolerance_seconds"] == seconds


@pytest.mark.parametrize("given", ["-1s", "-0.5", "soon", "2h"])
def test_api_and_cli_refuse_the_same_durations(loaded: Loaded, given: str) -> None:
    refused = loaded.service.post("/api/v1/reconciliations", json={**WINDOW, "tolerance": given})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "invalid_input"
    assert "tolerance" in refused.json()["detail"]
    env = {"CDRECON_DATABASE_URL": f"sqlite+aiosqlite:///{loaded.service.db_path}"}
    window = ["--from", WINDOW["from"], "--until", WINDOW["until"]]
    done = subprocess.run(
        [CDRECON, "reconcile", *window, f"--tolerance={given}"],
        env={**os.environ, **env},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert b"--tolerance" in done.stderr and b"Traceback" not in done.stderr
