"""Creates the async engine for the configured database, with SQLite tuned for ingest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.startup import StartupError

_SUGGESTION = "use sqlite+aiosqlite:///path/to/cdrecon.db or postgresql+asyncpg://user@host/db"


def check_url(url: str) -> None:
    """Refuse, before anything connects, a database URL that cannot work: unparsable, a
    driver that is not installed or not async, a SQLite file in a directory that does not
    exist. The message names CDRECON_DATABASE_URL and says what to write instead."""
    shown = _shown(url)
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except ArgumentError as exc:
        raise StartupError(
            f"cannot parse the database URL {shown!r} (CDRECON_DATABASE_URL): {_SUGGESTION}"
        ) from exc
    except (NoSuchModuleError, ImportError) as exc:
        raise StartupError(
            f"the database URL {shown!r} (CDRECON_DATABASE_URL) names a driver that is not "
            f"installed: {_SUGGESTION}"
        ) from exc
    if not getattr(dialect, "is_async", False):
        raise StartupError(
            f"the database URL {shown!r} (CDRECON_DATABASE_URL) names a driver that is not "
            f"async: {_SUGGESTION}"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        directory = Path(parsed.database).parent
        if not directory.is_dir():
            raise StartupError(
                f"the directory {directory} of the SQLite database {parsed.database} "
                "(CDRECON_DATABASE_URL) does not exist: create it or point the URL elsewhere"
            )


def _shown(url: str) -> str:
    """The URL as it may be printed: the password hidden when the URL parses."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def is_sqlite(url: str) -> bool:
    """True when the URL names a SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def existing_only(url: str) -> str:
    """`url`, opening a SQLite file only if it exists (SQLite's `mode=rw`): for a process
    that starts beside the service, which must not create an empty database where the
    service's was deleted or moved (app/db/location.py says so on /healthz)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    path = Path(parsed.database).absolute()
    existing = parsed.set(database=f"file:{path}", query={"mode": "rw", "uri": "true"})
    return existing.render_as_string(hide_password=False)


# How long the process's own work waits for a lock or a connection.
WAIT = 30.0


def create_engine(
    url: str,
    *,
    sqlite_synchronous: str = "NORMAL",
    request_wait: float | None = None,
    sqlite_cache_kib: int = 16384,
) -> AsyncEngine:
    """An async engine for `url`; SQLite gets WAL so that readers never block the writer.

    With `request_wait`, the engine of HTTP requests: a request waits at most that long for
    a pooled connection or a lock (SQLite's busy timeout, PostgreSQL's lock_timeout), then
    fails with an error `is_busy` recognises, so that the ingest writer keeps priority and
    the client hears at once to come back later."""
    wait = WAIT if request_wait is None else request_wait
    if not is_sqlite(url):
        if request_wait is None:
            return create_async_engine(url, pool_pre_ping=True)
        return create_async_engine(
            url,
            pool_pre_ping=True,
            pool_timeout=wait,
            connect_args={"server_settings": {"lock_timeout": str(round(wait * 1000))}},
        )
    # An in-memory database has one connection (StaticPool), which nobody waits for.
    pooled = make_url(url).database not in (None, "", ":memory:")
    engine = create_async_engine(
        url, connect_args={"timeout": wait}, **({"pool_timeout": wait} if pooled else {})
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, open transactions: the module's implicit
        # BEGIN breaks SAVEPOINT (SQLAlchemy's pysqlite documentation).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={round(wait * 1000)}")
        # 16 MiB of page cache by default (SQLite's is 2 MiB): the CDR table is keyed by
        # random participant ids, and with a small cache every upsert reads pages back.
        # (64 and 32 MiB bought no speed, ingest or reconciliation, and cost RSS:
        # bench/README.md, "Seventh round".)
        cursor.execute(f"PRAGMA cache_size=-{sqlite_cache_kib}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # 64 MiB of log before a commit checkpoints by itself (the default is 4 MiB): where
        # a batch writer runs, its background checkpointer (checkpoint.py) does it sooner,
        # off the writer's path; elsewhere the log still stays bounded.
        cursor.execute("PRAGMA wal_autocheckpoint=16384")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


# SQLite's "database is locked" / "database table is locked"; PostgreSQL's lock_not_available.
_BUSY_SQLITE = ("database is locked", "database table is locked")
_BUSY_SQLSTATE = "55P03"


def is_busy(exc: BaseException) -> bool:
    """True for a failure that only says the database is busy: no pooled connection came
    in time, or a lock was not granted within the wait. Trying again later may well work."""
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return True
    if not isinstance(exc, sqlalchemy.exc.DBAPIError):
        return False
    original = exc.orig
    code = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    return code == _BUSY_SQLSTATE or any(text in str(original) for text in _BUSY_SQLITE)
