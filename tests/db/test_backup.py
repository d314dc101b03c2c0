"""`cdrecon db backup` copies a database that `serve` is writing, consistently, and
`cdrecon db verify` tells a sound copy from a damaged or foreign one."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
from pathlib import Path

import pytest

from app.db.backup import BackupError, backup, verify
from app.db.engine import create_engine
from app.db.migrate import upgrade
from tests.conftest import POSTGRES_URL, Service, cdrecon


def _pexip_line(n: int) -> bytes:
    second = f"{n % 60:02d}"
    return (
        f"2026-11-26T10:00:{second}.000+00:00 conf-a 2026-11-26 10:00:{second},000 "
        'Level="INFO" Name="administrator.conference" Message="Participant has joined." '
        f'Conference="Weekly sync" Participant="p{n}" Participant-id="backup-{n}" '
        'Protocol="SIP" Direction="in"\n'
    ).encode()


class _Sender(threading.Thread):
    """Sends call-event lines over TCP until stopped, about 5,000 a second (a busy estate;
    unpaced, the copy would grow by hundreds of megabytes while commands start)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stopping = threading.Event()
        self.sent = 0

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            while not self.stopping.wait(0.04):
                sock.sendall(b"".join(_pexip_line(self.sent + i) for i in range(200)))
                self.sent += 200


def _scalar(path: Path, sql: str) -> int:
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return int(connection.execute(sql).fetchone()[0])
    finally:
        connection.close()


def test_backup_during_ingest_is_consistent_and_verifies(service: Service, tmp_path: Path) -> None:
    service.start()
    sender = _Sender(service.tcp_port)
    sender.start()
    try:
        service.wait_for("cdrecon_messages_stored_total", 2000)
        # The deriving process starts beside `serve` and may still be importing under load.
        service.wait_for("cdrecon_events_total", 1)
        copy = tmp_path / "copy.db"
        service.cli("db", "backup", str(copy))
        copied = _scalar(copy, "SELECT count(*) FROM messages")
        assert copied >= 2000
        # Ingest went on past the copy: the live store outgrows it while the sender runs.
        assert service.wait_for("cdrecon_messages_stored_total", copied + 1) > copied
    finally:
        sender.stopping.set()
        sender.join(30)

    # One snapshot: the node counters the writer updates in each batch's transaction add up
    # to the messages copied, and every copied call event's message is in the copy.
    assert _scalar(copy, "SELECT sum(messages) FROM nodes") == copied
    assert _scalar(copy, "SELECT count(*) FROM events") > 0
    orphans = "SELECT count(*) FROM events WHERE message_id NOT IN (SELECT id FROM messages)"
    assert _scalar(copy, orphans) == 0
    # One self-contained file: no write-ahead log beside it to lose.
    assert _scalar(copy, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode='delete'")

    verified = verify(copy)
    assert verified.sound and verified.revision == verified.newest_revision
    assert verified.counts["messages"] == copied
    # The counts the writer keeps in each transaction match the rows of the snapshot.
    assert verified.counts_off == {}


def test_verify_refuses_a_damaged_copy_and_a_foreign_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'live.db'}"
    upgrade(url)
    copy = tmp_path / "copy.db"

    async def copy_once() -> None:
        engine = create_engine(url)
        try:
            await backup(engine, copy)
        finally:
            await engine.dispose()

    asyncio.run(copy_once())
    assert verify(copy).sound
    with pytest.raises(BackupError, match="never overwrites"):
        asyncio.run(copy_once())

    miscounted = tmp_path / "miscounted.db"
    miscounted.write_bytes(copy.read_bytes())
    with sqlite3.connect(miscounted) as connection:
        connection.execute("INSERT INTO row_counts (table_name, slot, n) VALUES ('messages', 0, 5)")
    found = verify(miscounted)
    assert found.sound and found.counts_off == {"messages": (5, 0)}  # a note: db recount

    damaged = tmp_path / "damaged.db"
    data = bytearray(copy.read_bytes())
    page = 4096
    data[2 * page : 3 * page] = b"\xff" * page  # a table's page overwritten
    damaged.write_bytes(bytes(data))
    assert not verify(damaged).sound
    done = cdrecon(url, "db", "verify", str(damaged))
    assert done.returncode == 1 and str(damaged).encode() in done.stderr
    done = cdrecon(url, "db", "verify", str(copy))
    assert done.returncode == 0 and done.stdout.decode().rstrip().endswith(f"{copy}: sound")

    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    assert (
        "no schema revision (alembic_version): not a cdrecon database" in verify(foreign).problems
    )


def test_postgresql_backup_is_refused_with_pg_dump_guidance(tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    done = cdrecon(POSTGRES_URL, "db", "backup", str(copy))
    assert done.returncode == 1
    assert b"pg_dump -Fc" in done.stderr and b"pg_restore" in done.stderr
    assert not copy.exists()
