"""Stores an uploaded MN export without stalling the service: parsed off the event loop, and
written in short transactions so that the ingest writer never waits long for the database."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine, is_busy
from app.errors import CdreconError, DatabaseBusyError, InvalidInputError
from parsers.history import RecordError

from .coverage import AsOf, Kind, decide, record_coverage
from .repository import HistoryRepository
from .service import ExportRows, HistoryImport, HistoryImportError, read_export

log = logging.getLogger(__name__)

# Records per transaction: each holds SQLite's write lock for a few milliseconds.
CHUNK_RECORDS = 500
# Documents up to this size are parsed in a thread of the service; larger ones in a process
# of their own, as parsing holds the interpreter (and a thread would starve the receivers).
IN_PROCESS_BYTES = 1024 * 1024

# One large document at a time: its parse is what takes the memory.
_one_at_a_time = asyncio.Semaphore(1)


class HistoryStoreFailed(CdreconError):
    """The database failed part way through an upload; what was stored stays stored."""

    status = 503
    code = "database_unavailable"


async def store_in_chunks(
    engine: AsyncEngine, rows: ExportRows, source: str, kind: Kind, as_of_us: int | None
) -> tuple[HistoryImport, AsOf | None]:
    """Store `rows` CHUNK_RECORDS at a time, then the export's "as of". The "as of" is
    decided (and an impossible one refused) before anything is written, and recorded only
    once every record is stored: an interrupted upload claims no coverage, and uploading it
    again replaces its records rather than doubling them."""
    as_of = decide(rows.newest_end_us, operator_us=as_of_us)
    stored = rows.stored(source)
    written = 0
    try:
        for table_rows, upsert in (
            (rows.participants, HistoryRepository.upsert_participants),
            (rows.conferences, HistoryRepository.upsert_conferences),
        ):
            for start in range(0, len(table_rows), CHUNK_RECORDS):
                chunk = table_rows[start : start + CHUNK_RECORDS]
                async with engine.begin() as conn:
                    await upsert(HistoryRepository.for_connection(conn), conn, chunk)
                written += len(chunk)
        if as_of is not None:
            async with engine.begin() as conn:
                await record_coverage(
                    conn, kind, source, as_of, stored.participants + stored.conferences
                )
    except Exception as exc:
        if isinstance(exc, CdreconError):
            raise
        if written == 0 and is_busy(exc):
            raise DatabaseBusyError(f"{source}: the database is busy; nothing was stored") from exc
        failed = HistoryStoreFailed(
            f"{source}: the database failed after {written} of "
            f"{stored.participants + stored.conferences} records were stored ({exc}); "
            "upload it again: stored records are replaced, not doubled"
        )
        log.warning("%s", failed)
        raise failed from exc
    return stored, as_of


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What a worker process reports (exceptions are not sent across: plain values are)."""

    stored: HistoryImport | None = None
    as_of: AsOf | None = None
    refused: str | None = None  # an InvalidInputError's message
    record_errors: list[RecordError] | None = None  # a HistoryImportError's records
    failed: str | None = None  # a HistoryStoreFailed's message


def _read(path: Path, source: str) -> ExportRows:
    return read_export(path.read_bytes(), source)


async def _store(
    database_url: str, rows: ExportRows, source: str, kind: Kind, as_of_us: int | None
) -> _Outcome:
    engine = create_engine(database_url)
    try:
        stored, as_of = await store_in_chunks(engine, rows, source, kind, as_of_us)
    except HistoryStoreFailed as exc:
        return _Outcome(failed=str(exc))
    except InvalidInputError as exc:
        return _Outcome(refused=str(exc))
    finally:
        await engine.dispose()
    return _Outcome(stored=stored, as_of=as_of)


def _import_in_worker(
    database_url: str, path: Path, source: str, kind: Kind, as_of_us: int | None
) -> _Outcome:
    """The worker process's entry point: read, then store with an engine of its own."""
    try:
        rows = _read(path, source)
    except HistoryImportError as exc:
        return _Outcome(refused=str(exc), record_errors=exc.errors)
    except InvalidInputError as exc:
        return _Outcome(refused=str(exc))
    return asyncio.run(_store(database_url, rows, source, kind, as_of_us))


def _raise(outcome: _Outcome, source: str) -> None:
    if outcome.record_errors:
        raise HistoryImportError(source, outcome.record_errors)
    if outcome.refused is not None:
        raise InvalidInputError(outcome.refused)
    if outcome.failed is not None:
        raise HistoryStoreFailed(outcome.failed)


async def import_upload(
    engine: AsyncEngine,
    database_url: str,
    path: Path,
    size: int,
    source: str,
    *,
    as_of_us: int | None = None,
) -> tuple[HistoryImport, AsOf | None]:
    """Import the export spooled at `path` (`size` bytes): all records or, if any is bad,
    none."""
    if size <= IN_PROCESS_BYTES:
        rows = await asyncio.to_thread(_read, path, source)
        return await store_in_chunks(engine, rows, source, Kind.UPLOAD, as_of_us)
    async with _one_at_a_time:
        loop = asyncio.get_running_loop()
        # A fresh process for each document: its memory goes back when it ends.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            outcome = await loop.run_in_executor(
                pool, _import_in_worker, database_url, path, source, Kind.UPLOAD, as_of_us
            )
    _raise(outcome, source)
    assert outcome.stored is not None
    return outcome.stored, outcome.as_of
