"""`cdrecon import-syslog` with the deriving process (the default) and without it: the same
events and CDRs, a right summary, and a deriving process killed mid-import replaced, the
import ending complete."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cdr.scenario import CALL_EVENTS, EXPECTED, LINES
from tests.conftest import CDRECON

# A bound on waiting for a process, not a speed: it fails only a stuck test, and under
# pytest-timeout's 120 s, so that the assertion says what was stuck.
PATIENCE = 90.0
SUMMARY = re.compile(
    rb"files 1, lines (\d+), stored (\d+), duplicates (\d+), parse failures 0, "
    rb"new call events (\d+)"
)
# Legs beyond the scenario's: enough lines for many batches and derivations.
LEGS = 400


def extra_lines() -> Iterator[str]:
    """Joins and disconnects of `LEGS` legs, on two nodes; every third leg's join logged by
    both (one event, two messages), every fifth leg still in its call."""
    for leg in range(LEGS):
        minute, second = divmod(leg, 60)
        clock = f"11:{minute:02d}:{second:02d}"
        fields = f'Conference="c{leg % 7}" Participant-id="leg-{leg}" Protocol="SIP"'
        join = (
            f'{clock},000 Level="INFO" Name="administrator.conference" '
            f'Message="Participant has joined." {fields}'
        )
        nodes = ["conf-a", "conf-b"] if leg % 3 == 0 else ["conf-a"]
        for node in nodes:
            yield f"2026-11-26T{clock}.000+00:00 {node} pexip: 2026-11-26 {join}"
        if leg % 5:
            end = f"12:{minute:02d}:{second:02d}"
            yield (
                f"2026-11-26T{end}.500+00:00 conf-a pexip: 2026-11-26 {end},500 "
                f'Level="INFO" Name="administrator.conference" '
                f'Message="Participant has disconnected." {fields} Detail="Call disconnected"'
            )


EXTRA = list(extra_lines())
ALL_LINES = [line.rsyslog() for line in LINES] + EXTRA
# Distinct call events: the scenario's, and one per extra line less the second nodes' joins.
EVENTS = CALL_EVENTS + len(EXTRA) - len(range(0, LEGS, 3))


@pytest.fixture
def backfill(tmp_path: Path) -> Path:
    path = tmp_path / "pexip.log.1.gz"
    with gzip.open(path, "wt") as out:
        out.write("".join(line + "\n" for line in ALL_LINES))
    return path


def environment(database: Path, derive_process: bool) -> dict[str, str]:
    return {
        **os.environ,
        "CDRECON_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "CDRECON_DERIVE_PROCESS": str(derive_process).lower(),
        # Small batches: many runs listed, many derivations handed back.
        "CDRECON_BATCH_SIZE": "50",
    }


def import_syslog(env: dict[str, str], path: Path) -> tuple[int, ...]:
    done = subprocess.run(
        [CDRECON, "import-syslog", str(path)], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    return summary(done.stdout)


def summary(stdout: bytes) -> tuple[int, ...]:
    """(lines, stored, duplicates, new call events) of the summary line."""
    found = SUMMARY.search(stdout)
    assert found is not None, stdout.decode()
    return tuple(int(figure) for figure in found.groups())


def derived(database: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every event (with the messages it came in) and every CDR, whole, and what is still
    listed for deriving."""
    with sqlite3.connect(database) as conn:
        found = {
            "events": conn.execute("SELECT * FROM events ORDER BY digest").fetchall(),
            "event_messages": conn.execute(
                "SELECT * FROM event_messages ORDER BY digest, message_id"
            ).fetchall(),
            "cdrs": conn.execute("SELECT * FROM cdrs ORDER BY id").fetchall(),
            "listed": conn.execute("SELECT * FROM pending_derivations").fetchall(),
        }
    conn.close()
    return found


def stored_messages(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        (count,) = conn.execute("SELECT count(*) FROM messages").fetchone()
    conn.close()
    return int(count)


def test_the_deriving_process_derives_an_import_as_one_process_does(
    backfill: Path, tmp_path: Path
) -> None:
    results = {}
    for derive_process in (False, True):
        database = tmp_path / f"derive-process-{derive_process}.db"
        env = environment(database, derive_process)
        assert import_syslog(env, backfill) == (len(ALL_LINES), len(ALL_LINES), 0, EVENTS)
        # Nothing new the second time, and nothing derived again.
        assert import_syslog(env, backfill) == (len(ALL_LINES), 0, len(ALL_LINES), 0)
        results[derive_process] = derived(database)
    one, two = results[False], results[True]
    assert len(two["events"]) == EVENTS
    assert len(two["cdrs"]) == LEGS + len(EXPECTED)
    assert two["listed"] == []
    assert two == one


def worker_of(process: subprocess.Popen[bytes]) -> int:
    """The deriving process the import started (its only child), once it runs the worker:
    a child caught between fork and exec still holds up its parent (vfork), and stopping
    it there would stop the import too."""
    deadline = time.monotonic() + PATIENCE
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    while True:
        found = children.read_text().split()
        if found:
            (child,) = found
            with contextlib.suppress(OSError):
                if b"app.cdr.worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
        assert process.poll() is None, "the import ended without a deriving process"
        assert time.monotonic() < deadline, "the import started no deriving process"
        time.sleep(0.01)


def test_a_deriving_process_killed_during_an_import_is_replaced_and_the_import_completes(
    backfill: Path, tmp_path: Path
) -> None:
    one_process = tmp_path / "one-process.db"
    import_syslog(environment(one_process, False), backfill)
    database = tmp_path / "killed.db"
    env = environment(database, True)
    subprocess.run([CDRECON, "db", "upgrade"], env=env, check=True, capture_output=True)
    # The import can store nothing until the lock is let go: its deriving process is
    # stopped before it derives anything, whatever the speed of the machine.
    lock = sqlite3.connect(database, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    # Files, not pipes: the import logs a traceback for each commit the lock refuses, and a
    # pipe no one reads would stop it once full.
    out, err = tmp_path / "import.out", tmp_path / "import.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        importing = subprocess.Popen(
            [CDRECON, "import-syslog", str(backfill)], env=env, stdout=stdout, stderr=stderr
        )
    try:
        worker = worker_of(importing)
        os.kill(worker, signal.SIGSTOP)
        lock.rollback()
        lock.close()
        # Every line stored and listed: the import now waits for the stopped process.
        deadline = time.monotonic() + PATIENCE
        while stored_messages(database) < len(ALL_LINES):
            assert importing.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "the import did not store every line"
            time.sleep(0.05)
        assert importing.poll() is None
        os.kill(worker, signal.SIGKILL)
        importing.wait(timeout=PATIENCE)
    finally:
        if importing.poll() is None:
            importing.kill()
            importing.wait()
    assert importing.returncode == 0, err.read_text()
    assert summary(out.read_bytes()) == (len(ALL_LINES), len(ALL_LINES), 0, EVENTS)
    assert "the deriving process ended" in err.read_text()
    assert derived(database) == derived(one_process)
