"""Stores an uploaded MN export without stalling the service: read as a stream off the event
loop (memory follows a batch of records, not the document), and written in short transactions
so that the ingest writer never waits long for the database."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import create_engine, is_busy
from app.errors import CdreconError, DatabaseBusyError, InvalidInputError
from parsers.history import RecordError

from .coverage import AsOf, Kind, decide, record_coverage
from .service import (
    HistoryImport,
    HistoryImportError,
    check_export,
    export_batches,
    store_batch,
)

log = logging.getLogger(__name__)

# Documents up to this size are read in a thread of the service; larger ones in a process
# of their own, as reading holds the interpreter (and a thread would starve the receivers).
IN_PROCESS_BYTES = 1024 * 1024
# The spooled document is read this much at a time: the reader keeps about one record more.
READ_BYTES = 64 * 1024

# One large document at a time: a process each.
_one_at_a_time = asyncio.Semaphore(1)


class HistoryStoreFailed(CdreconError):
    """The database failed part way through an upload; what was stored stays stored."""

    status = 503
    code = "database_unavailable"


def _read(path: Path) -> Iterator[bytes]:
    with path.open("rb") as spooled:
        while chunk := spooled.read(READ_BYTES):
            yield chunk


async def store_in_batches(
    engine: AsyncEngine, path: Path, source: str, kind: Kind, as_of_us: int | None
) -> tuple[HistoryImport, AsOf | None]:
    """Import the export at `path` in two passes over it, neither keeping more than a batch
    of records: the first reads every record and refuses the document if any is bad
    (`check_export`), and decides its "as of" (refusing an impossible one); only then the
    second stores it BATCH_RECORDS a transaction, and records the "as of" once every record
    is stored: an interrupted upload claims no coverage, and uploading it again replaces its
    records rather than doubling them. Reading runs in a thread, between transactions."""
    newest_us = await asyncio.to_thread(check_export, _read(path), source)
    as_of = decide(newest_us, operator_us=as_of_us)
    result = HistoryImport(source)
    now_us = time.time_ns() // 1000
    batches = export_batches(_read(path), source)
    committed = 0  # records stored by the transactions that committed
    try:
        while batch := await asyncio.to_thread(next, batches, None):
            async with engine.begin() as conn:
                await store_batch(conn, batch, result, now_us)
            committed = result.records
        if as_of is not None:
            async with engine.begin() as conn:
                await record_coverage(conn, kind, source, as_of, result.records)
    except Exception as exc:
        if isinstance(exc, CdreconError):
            raise
        if committed == 0 and is_busy(exc):
            raise DatabaseBusyError(f"{source}: the database is busy; nothing was stored") from exc
        # The driver's own message: SQLAlchemy's repeats the statement and its rows.
        reason = getattr(exc, "orig", None) or exc
        failed = HistoryStoreFailed(
            f"{source}: the database failed after {committed} records were stored "
            f"({reason}); upload it again: stored records are replaced, not doubled"
        )
        log.warning("%s", failed)
        raise failed from exc
    finally:
        batches.close()
    return result, as_of


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What a worker process reports (exceptions are not sent across: plain values are)."""

    stored: HistoryImport | None = None
    as_of: AsOf | None = None
    refused: str | None = None  # an InvalidInputError's message
    record_errors: list[RecordError] | None = None  # a HistoryImportError's records
    record_error_count: int = 0
    failed: str | None = None  # a HistoryStoreFailed's message


async def _import(
    database_url: str, path: Path, source: str, kind: Kind, as_of_us: int | None
) -> _Outcome:
    engine = create_engine(database_url)
    try:
        stored, as_of = await store_in_batches(engine, path, source, kind, as_of_us)
    except HistoryImportError as exc:
        return _Outcome(refused=str(exc), record_errors=exc.errors, record_error_count=exc.count)
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
    """The worker process's entry point: read and store with an engine of its own."""
    return asyncio.run(_import(database_url, path, source, kind, as_of_us))


def _raise(outcome: _Outcome, source: str) -> None:
    if outcome.record_errors:
        raise HistoryImportError(source, outcome.record_errors, outcome.record_error_count)
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
        return await store_in_batches(engine, path, source, Kind.UPLOAD, as_of_us)
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
