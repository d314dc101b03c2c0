"""`cdrecon pull-history` against a real HTTP server speaking the MN's Tastypie contract."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from datetime import UTC, timedelta
from pathlib import Path

from tests.conftest import CDRECON
from tests.history.fake_mn import FakeMN, make_conferences, make_participants, parse_mn_time


def pull(db: Path, mn: FakeMN, password_file: Path) -> str:
    env = {**os.environ, "CDRECON_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
    done = subprocess.run(
        [
            CDRECON,
            "pull-history",
            "--url",
            mn.url,
            "--user",
            "admin",
            "--password-file",
            str(password_file),
        ],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def stored(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(db) as conn:
        participants = conn.execute("select count(*) from mn_participants").fetchone()[0]
        conferences = conn.execute("select count(*) from mn_conferences").fetchone()[0]
        checkpoint = conn.execute(
            "select end_us from pull_checkpoints where resource = 'participant'"
        ).fetchone()[0]
    return participants, conferences, checkpoint


def test_pull_pages_through_failures_and_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "cdrecon.db"
    secret = tmp_path / "mn.pass"
    secret.write_text("secret\n")
    participants = make_participants(2500)
    with FakeMN(participants, make_conferences(participants), fail_once={1000}) as mn:
        out = pull(db, mn, secret)
        assert "2500 participant" in out
        count, conferences, checkpoint = stored(db)
        assert (count, conferences) == (2500, len(make_conferences(participants)))
        last_end = max(parse_mn_time(str(p["end_time"])) for p in participants)
        assert checkpoint == round(last_end.replace(tzinfo=UTC).timestamp() * 1_000_000)

        # The MN writes more records; the next pull starts from the checkpoint (less a
        # safety overlap) instead of from the beginning.
        newer = make_participants(
            50,
            start=parse_mn_time(str(participants[-1]["start_time"])) + timedelta(hours=1),
            seed=9,
        )
        mn.records["participant"] = participants + newer
        before = len(mn.requests)
        pull(db, mn, secret)
        second = [r for r in mn.requests[before:] if "participant" in r.path]
        assert all("end_time__gte" in r.query for r in second)
        assert len(second) == 1  # only the last stretch is read again
        assert stored(db)[0] == 2550
