"""Every state-changing command of the CLI is audited, by `cli:<os user>`, as the API's
routes are by their token."""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import subprocess
from pathlib import Path

from tests.cdr.scenario import LINES
from tests.conftest import CDRECON
from tests.history.fake_mn import FakeMN, make_conferences, make_participants

FIXTURES = Path(__file__).resolve().parent / "fixtures"
WINDOW = ("--from", "2026-11-01T00:00:00Z", "--until", "2026-12-01T00:00:00Z")


def test_every_state_changing_command_is_audited_with_the_os_user(tmp_path: Path) -> None:
    db = tmp_path / "cdrecon.db"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDRECON_")},
        "CDRECON_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
    }

    def cdrecon(*args: str) -> None:
        done = subprocess.run(
            [CDRECON, *args], env=env, cwd=tmp_path, capture_output=True, timeout=120
        )
        assert done.returncode == 0, f"cdrecon {args}: {done.stderr.decode()}"

    (tmp_path / "node.log").write_text("".join(line.rsyslog() + "\n" for line in LINES))
    (tmp_path / "mn.pass").write_text("secret\n")
    participants = make_participants(3)
    cdrecon("token", "create", "ops", "--scope", "admin")
    cdrecon("token", "revoke", "ops")
    cdrecon("import-syslog", "node.log")
    cdrecon("import-history", str(FIXTURES / "history/participants.export-csv.csv"))
    with FakeMN(participants, make_conferences(participants)) as mn:
        cdrecon("pull-history", "--url", mn.url, "--user", "admin", "--password-file", "mn.pass")
    cdrecon("reconcile", *WINDOW)
    cdrecon("export", *WINDOW, "-o", "batch.csv")
    cdrecon("rebuild")

    with sqlite3.connect(db) as conn:
        entries = conn.execute("select actor, action, target, parameters from audit_log").fetchall()
    actors = {actor for actor, *_ in entries}
    assert actors == {f"cli:{getpass.getuser()}"}
    actions = [action for _, action, *_ in entries]
    assert actions == [
        "token.create",
        "token.revoke",
        "syslog.import",
        "history.import",
        "history.pull",
        "reconciliation.run",
        "export.create",
        "export.download",
        "cdr.rebuild",
    ]
    parameters = {action: json.loads(p) if p else None for _, action, _, p in entries}
    assert parameters["syslog.import"]["stored"] == len(LINES)
    assert parameters["history.pull"]["participants"] == 3
    assert parameters["export.create"]["from"] == WINDOW[1]
