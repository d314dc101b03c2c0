"""Runs the Alembic migrations, from the CLI or at service start, one process at a time.

Any number of commands may start together on a new database (`serve` and `token create`
from the same script): each migrates under a lock, so one builds the schema and the others
find it built. On SQLite the lock is `flock` on a file beside the database; on PostgreSQL it
is an advisory lock, held on a connection of its own while Alembic runs.
"""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

import migrations
from app.config import DatabaseUnavailableError
from app.db.engine import check_url

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent
# pg_advisory_lock's key for "cdrecon is migrating": the bytes of "cdrecon".
ADVISORY_LOCK_KEY = int.from_bytes(b"cdrecon", "big")


def alembic_config(database_url: str) -> Config:
    """An Alembic config for `database_url` that works without alembic.ini (installed copies)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema at `database_url` up to `revision`, waiting for any other process
    migrating the same database. Blocking: call it off the loop. A URL that cannot work is
    a `StartupError`, a database that refuses us a `DatabaseUnavailableError`."""
    check_url(database_url)
    url = make_url(database_url)
    config = alembic_config(database_url)
    if url.get_backend_name() == "sqlite":
        _upgrade_sqlite(url.database or "", config, revision)
    else:
        asyncio.run(_upgrade_locked(database_url, config, revision))


def _upgrade_sqlite(database: str, config: Config, revision: str) -> None:
    if database in ("", ":memory:"):
        command.upgrade(config, revision)
        return
    try:
        # Opens (or creates) the file as SQLite would, so an unusable one is named here.
        probe = sqlite3.connect(database)
        try:
            probe.execute("PRAGMA schema_version")
        finally:
            probe.close()
    except sqlite3.Error as exc:
        raise DatabaseUnavailableError(
            f"cannot open the SQLite database {database} (CDRECON_DATABASE_URL): {exc}"
        ) from exc
    # A file of its own: closing a descriptor of the database file itself would drop the
    # POSIX locks that SQLite connections of this process hold on it.
    with open(f"{database}-migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            command.upgrade(config, revision)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def _upgrade_locked(database_url: str, config: Config, revision: str) -> None:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        try:
            conn = await engine.connect()
        except (OSError, DBAPIError) as exc:
            shown = make_url(database_url).render_as_string(hide_password=True)
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise DatabaseUnavailableError(
                f"cannot connect to the database {shown} (CDRECON_DATABASE_URL): {reason}; "
                "check that the server runs and that the role and database exist"
            ) from exc
        try:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            await asyncio.to_thread(command.upgrade, config, revision)
        finally:
            # Closing the session releases its advisory lock.
            await conn.close()
    finally:
        await engine.dispose()
