"""Copies the SQLite database while the service runs, and checks a copy (`cdrecon db backup`,
`cdrecon db verify`).

The copy is SQLite's online backup API in one step: it reads one snapshot (WAL lets the batch
writer go on committing meanwhile) and never sees half a transaction. A PostgreSQL database
is backed up with `pg_dump`, which does the same there; `backup` refuses it with the command.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.counts import COUNTED
from app.db.migrate import alembic_config
from app.db.models import metadata
from app.errors import CdreconError


class BackupError(CdreconError):
    """A backup that cannot be made as asked; nothing was written."""


@dataclass(frozen=True, slots=True)
class Backup:
    """A finished copy."""

    path: Path
    bytes: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Verification:
    """What `verify` found in a copy; `problems` is empty when it is sound."""

    path: Path
    revision: str | None
    newest_revision: str
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # Maintained row counts (app/db/counts.py) that differ from the rows: (kept, rows). Not a
    # damaged copy (they are kept in each writing transaction, so a sound snapshot matches
    # unless the live database was off too), but `cdrecon db recount` after restoring it.
    counts_off: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def sound(self) -> bool:
        """True when the copy is intact, at the newest schema and holds every table."""
        return not self.problems


def pg_dump_guidance(database_url: str) -> str:
    """How to back up (and restore) a PostgreSQL database, for the operator."""
    url = make_url(database_url)
    target = url.set(drivername="postgresql").render_as_string(hide_password=True)
    return (
        "cdrecon db backup copies SQLite databases; for PostgreSQL use pg_dump, which also "
        f"reads one consistent snapshot while cdrecon runs: pg_dump -Fc -f FILE '{target}' "
        "(restore into an empty database with pg_restore -d NEWDB FILE)"
    )


async def backup(engine: AsyncEngine, destination: Path) -> Backup:
    """Copy the engine's SQLite database to `destination` (a new file), consistent while
    other connections write. The copy is written beside it under a temporary name, made a
    single self-contained file (rollback journal, not WAL), synced, then renamed."""
    url = engine.url
    if url.get_backend_name() != "sqlite":
        raise BackupError(pg_dump_guidance(url.render_as_string(hide_password=False)))
    if url.database in (None, "", ":memory:"):
        raise BackupError("the database is in memory: there is no file to back up")
    await asyncio.to_thread(_check_destination, destination)
    partial = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    started = time.monotonic()
    target = sqlite3.connect(partial, isolation_level=None, check_same_thread=False)
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            source = raw.driver_connection
            assert source is not None
            # pages=0: the whole database in one step, from one snapshot. Stepwise copying
            # starts over whenever another connection commits, which ingest does all the time.
            await source.backup(target, pages=0)
        target.execute("PRAGMA journal_mode=DELETE").fetchall()
    except BaseException:
        target.close()
        partial.unlink(missing_ok=True)
        raise
    target.close()
    size = await asyncio.to_thread(_publish, partial, destination)
    return Backup(destination, size, time.monotonic() - started)


def _check_destination(destination: Path) -> None:
    if destination.exists():
        raise BackupError(f"{destination} exists: a backup never overwrites, choose a new name")
    if not destination.parent.is_dir():
        raise BackupError(f"the directory {destination.parent} does not exist")


def _publish(partial: Path, destination: Path) -> int:
    """Sync the finished copy, give it its name, sync the directory; its size."""
    with open(partial, "rb") as copied:
        os.fsync(copied.fileno())
    os.replace(partial, destination)
    directory = os.open(destination.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return destination.stat().st_size


def newest_revision() -> str:
    """The schema revision the migrations build."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def verify(path: Path) -> Verification:
    """Check a SQLite copy without changing it: SQLite's integrity check, the schema
    revision against the newest, and the rows of every table."""
    newest = newest_revision()
    problems: list[str] = []
    counts: dict[str, int] = {}
    revision: str | None = None
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return Verification(path, None, newest, problems=[f"cannot open: {exc}"])
    try:
        integrity = [str(row[0]) for row in connection.execute("PRAGMA integrity_check")]
        if integrity != ["ok"]:
            problems.extend(f"integrity: {line}" for line in integrity[:20])
        try:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = None if row is None else str(row[0])
        except sqlite3.Error:
            problems.append("no schema revision (alembic_version): not a cdrecon database")
        if revision is not None and revision != newest:
            problems.append(f"schema revision {revision}, the newest is {newest}")
        for table in metadata.sorted_tables:
            try:
                counts[table.name] = int(
                    connection.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()[0]
                )
            except sqlite3.Error as exc:
                problems.append(f"table {table.name}: {exc}")
        counts_off = _counts_off(connection, counts)
    except sqlite3.DatabaseError as exc:
        problems.append(f"not a readable SQLite database: {exc}")
        counts_off = {}
    finally:
        connection.close()
    return Verification(path, revision, newest, counts, problems, counts_off)


def _counts_off(connection: sqlite3.Connection, rows: dict[str, int]) -> dict[str, tuple[int, int]]:
    """The maintained counts that differ from the rows counted."""
    if "row_counts" not in rows:
        return {}
    kept = {
        str(table): int(n)
        for table, n in connection.execute(
            "SELECT table_name, sum(n) FROM row_counts GROUP BY table_name"
        )
    }
    return {
        table: (kept.get(table, 0), rows[table])
        for table in COUNTED
        if table in rows and kept.get(table, 0) != rows[table]
    }
