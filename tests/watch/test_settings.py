"""The watch's start-up mistakes: each names the setting; `cdrecon serve` ends with one line
and exit status 3 (a setting is wrong) before it listens anywhere."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings
from tests.conftest import CDRECON, free_port

SETUP = 3


def serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CDRECON, "serve"],
        env={
            **os.environ,
            "CDRECON_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cdrecon.db'}",
            "CDRECON_SYSLOG_TCP": "off",
            "CDRECON_SYSLOG_UDP": "off",
            "CDRECON_HTTP": f"127.0.0.1:{free_port()}",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CDRECON_WATCH": "true"}, "CDRECON_WATCH needs the MN history it watches"),
        (
            {"CDRECON_WATCH_WEBHOOK_URL": "ftp://hooks.example"},
            "CDRECON_WATCH_WEBHOOK_URL must be http(s)",
        ),
        (
            {"CDRECON_WATCH_WEBHOOK_SECRET_FILE": "secret"},
            "CDRECON_WATCH_WEBHOOK_SECRET_FILE is set but CDRECON_WATCH_WEBHOOK_URL is not",
        ),
        ({"CDRECON_WATCH_WINDOW": "0"}, "CDRECON_WATCH_WINDOW"),
        ({"CDRECON_MN_PULL_INTERVAL": "0.5"}, "CDRECON_MN_PULL_INTERVAL"),
    ],
)
def test_a_wrong_watch_setting_is_refused_naming_it(env: dict[str, str], says: str) -> None:
    # As the CLI builds its settings, whose every refusal is one line and status 3
    # (tests/test_startup.py).
    with pytest.raises(ValidationError) as refused:
        Settings(**{name.removeprefix("CDRECON_").lower(): value for name, value in env.items()})
    # pydantic names a field by its name; the message of a check across fields names the
    # variable.
    assert _plain(says) in _plain(str(refused.value))


def _plain(text: str) -> str:
    return text.replace("CDRECON_", "").lower()


def test_a_webhook_secret_that_cannot_be_read_stops_serve_before_it_listens(
    tmp_path: Path,
) -> None:
    watch = {
        "CDRECON_WATCH": "true",
        "CDRECON_MN_URL": "https://mn.example.invalid",
        "CDRECON_WATCH_WEBHOOK_URL": "https://hooks.example.invalid/cdrecon",
    }
    missing = serve(tmp_path, **watch, CDRECON_WATCH_WEBHOOK_SECRET_FILE=str(tmp_path / "none"))
    assert missing.returncode == SETUP, missing.stderr
    assert "cannot read the webhook secret" in missing.stderr
    assert "Traceback" not in missing.stderr
    (tmp_path / "empty").write_text("\n")
    empty = serve(tmp_path, **watch, CDRECON_WATCH_WEBHOOK_SECRET_FILE=str(tmp_path / "empty"))
    assert empty.returncode == SETUP and "is empty" in empty.stderr
    assert "cdrecon serving" not in empty.stderr
