"""Export batches: create (freeze the record set), describe, and stream them byte-stably."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.cdr.deriving import derive_pending
from app.errors import CdreconError, InvalidInputError, NotFoundError
from app.paging import cut_page, decode_cursor
from app.reconcile.matching import Status
from app.reconcile.service import get_summary
from app.times import iso

from .formats import CsvEncoder, record_from_cdr
from .repository import ExportRepository, candidates

CHUNK = 2000
# How many earlier batches a refusal names.
_NAMED_BATCHES = 5
# What a batch's row says until its records are frozen (never seen: the same transaction
# replaces it).
_EMPTY: dict[str, Any] = {
    "record_count": 0,
    "total_duration": 0,
    "first_start_us": None,
    "last_start_us": None,
    "sha256_csv": "",
    "sha256_jsonl": "",
}


class ExportFormat(StrEnum):
    """Download formats."""

    CSV = "csv"
    JSONL = "jsonl"


class IdempotencyConflict(CdreconError):
    """The Idempotency-Key was used before for a different request."""

    status = 409
    code = "idempotency_conflict"


class NothingToExport(CdreconError):
    """The request chooses no records at all; no batch is made."""

    status = 422
    code = "nothing_to_export"


class AlreadyExported(CdreconError):
    """Every record the request chooses is in an earlier batch; no batch is made."""

    status = 409
    code = "already_exported"


# Statuses whose records billing must not receive from a run, and why: none is known to be
# lost by the MN, so a batch of them could bill a call twice or bill one that never was.
_NOT_EXPORTED: dict[str, str] = {
    Status.AFTER_HISTORY: "they ended after the newest MN history's as-of, so the MN may "
    "still hold them; import or pull newer history and reconcile again",
    Status.OUTSIDE_RETENTION: "they are older than anything the MN still holds, so whether "
    "the MN lost them is unknown",
    Status.OPEN: "the call has not ended",
    Status.EXCLUDED: "backplanes and attempts that never joined are not billable",
    Status.MISSING_IN_SYSLOG: "there is no syslog CDR to export",
    Status.UNCONFIRMED: "the MN history for their time came only from an incremental pull, "
    "and the MN may have written them late; pull it again (cdrecon pull-history --since the "
    "run's start) and reconcile again",
}


class HistoryUnconfirmed(CdreconError):
    """The run's lost records include some the MN history read since does not confirm: a
    batch of the others would look like all the run found, so none is made."""

    status = 409
    code = "history_unconfirmed"


@dataclass(frozen=True)
class ExportRequest:
    """What goes into a batch: a run's records of one status, or closed CDRs in a window."""

    run_id: int | None = None
    status: str = "missing_in_mn"
    from_us: int | None = None
    until_us: int | None = None
    protocols: tuple[str, ...] = ()
    service_type: str | None = None
    conference: str | None = None
    has_media: bool | None = None
    min_duration: int | None = None
    include_exported: bool = False
    filters: dict[str, Any] = field(default_factory=dict, compare=False)

    def check(self) -> None:
        """InvalidInputError unless the request names one source of records."""
        window = self.from_us is not None or self.until_us is not None
        if self.run_id is None and not window:
            raise InvalidInputError("say what to export: a reconciliation run, or a time window")
        if self.run_id is not None and window:
            raise InvalidInputError("give a reconciliation run or a time window, not both")
        if self.run_id is not None and self.status in _NOT_EXPORTED:
            why = _NOT_EXPORTED[self.status]
            raise InvalidInputError(f"records with status {self.status} are never exported: {why}")
        if self.run_id is not None and self.status not in set(Status):
            known = ", ".join(sorted(set(Status) - set(_NOT_EXPORTED)))
            raise InvalidInputError(f"unknown status {self.status!r}; exportable: {known}")
        if self.from_us is not None and self.until_us is not None and self.from_us >= self.until_us:
            raise InvalidInputError(
                f"the window is empty: from {iso(self.from_us)} is not before "
                f"until {iso(self.until_us)}"
            )

    def source(self) -> dict[str, Any]:
        """Where the records come from, as recorded in the manifest."""
        if self.run_id is not None:
            return {"run_id": self.run_id, "status": self.status}
        return {"from_us": self.from_us, "until_us": self.until_us}

    def fingerprint(self) -> str:
        """Identifies the request, to tell a retried request from a different one."""
        values = asdict(self)
        values.pop("filters")
        return json.dumps(values, sort_keys=True, default=list)

    def records(self, *, include_exported: bool) -> Select[Any]:
        """The query choosing this request's records, in batch order."""
        return candidates(
            run_id=self.run_id,
            status=self.status,
            from_us=self.from_us,
            until_us=self.until_us,
            protocols=self.protocols,
            service_type=self.service_type,
            conference=self.conference,
            has_media=self.has_media,
            min_duration=self.min_duration,
            include_exported=include_exported,
        )

    def describe(self) -> str:
        """The records chosen, in words: "lost records of run 1"."""
        if self.run_id is not None:
            kind = "lost" if self.status == "missing_in_mn" else self.status
            what = f"{kind} records of run {self.run_id}"
        else:
            what = "closed CDRs starting"
            if self.from_us is not None:
                what += f" from {iso(self.from_us)}"
            if self.until_us is not None:
                what += f" until {iso(self.until_us)}"
        narrowed = self.protocols or any(
            value is not None
            for value in (self.service_type, self.conference, self.has_media, self.min_duration)
        )
        return what + (" that pass the filters" if narrowed else "")


def manifest(row: dict[str, Any]) -> dict[str, Any]:
    """The public description of a batch."""
    return {
        "id": row["id"],
        "created_by": row["created_by"],
        "created_at": iso(row["created_us"]),
        "source": json.loads(row["source"]),
        "filters": json.loads(row["filters"]),
        "record_count": row["record_count"],
        "total_duration": row["total_duration"],
        "first_start_time": iso(row["first_start_us"]),
        "last_start_time": iso(row["last_start_us"]),
        "sha256": {"csv": row["sha256_csv"], "jsonl": row["sha256_jsonl"]},
    }


async def create_export(
    conn: AsyncConnection,
    engine: AsyncEngine,
    request: ExportRequest,
    actor: str,
    idempotency_key: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Create a batch (or return the one made with the same Idempotency-Key); (manifest, new).

    A batch holds at least one record, and none that an earlier batch holds unless
    `include_exported` is asked for; concurrent requests keep to this too (the database's
    `first_exports` key decides who got a record). The records are read and frozen in
    `conn`'s transaction a chunk at a time, so memory stays flat however large the batch,
    and each request needs one connection of the pool, not two. A window reads CDRs: what
    a busy writer deferred is derived first, in transactions of its own, before `conn`
    reads anything (on SQLite, a transaction that has read cannot write once another has
    committed).
    """
    request.check()
    if request.run_id is None:
        await derive_pending(engine)
    repository = ExportRepository.for_connection(conn)
    fingerprint = request.fingerprint()
    export_id = f"exp_{time.strftime('%Y%m%d')}_{secrets.token_hex(6)}"
    batch = {
        "id": export_id,
        "created_us": time.time_ns() // 1000,
        "created_by": actor,
        "idempotency_key": idempotency_key,
        "source": json.dumps(request.source()),
        "filters": json.dumps({**request.filters, "_request": fingerprint}),
        **_EMPTY,
    }
    # The batch's row is `conn`'s first statement: on SQLite it takes the write lock before
    # anything is read, and the same key in flight elsewhere is waited for.
    if not await repository.start_batch(conn, batch):
        assert idempotency_key is not None
        existing = await repository.by_idempotency_key(conn, idempotency_key)
        assert existing is not None
        if json.loads(existing["filters"]).get("_request") != fingerprint:
            raise IdempotencyConflict(
                f"Idempotency-Key {idempotency_key!r} was used for a different request"
            )
        return manifest(existing), False
    if request.run_id is not None:
        summary = await get_summary(conn, request.run_id)
        _check_confirmed(request, summary)
    query = request.records(include_exported=request.include_exported)
    frozen = await _freeze(conn, query, export_id)
    if frozen["record_count"] == 0:
        raise await _why_empty(conn, repository, request)
    claimed = await repository.claim_records(conn, export_id)
    if not request.include_exported and claimed != frozen["record_count"]:
        # Batches are made one at a time (see `start_batch`), so this means the database's
        # `first_exports` key refused a record some other path claimed: refuse, never share.
        raise AlreadyExported(f"some of the {request.describe()} were claimed meanwhile; try again")
    await repository.finish_batch(conn, export_id, frozen)
    return manifest({**batch, **frozen}), True


def _check_confirmed(request: ExportRequest, summary: dict[str, Any]) -> None:
    """HistoryUnconfirmed when the lost records of a run are asked for and the run holds
    records it could not confirm lost (an incremental pull can miss a record the MN writes
    late: billing it would charge the call twice)."""
    unconfirmed = int(summary.get("counts", {}).get(Status.UNCONFIRMED.value, 0))
    if request.status != Status.MISSING_IN_MN or not unconfirmed:
        return
    raise HistoryUnconfirmed(
        f"run {request.run_id} has {unconfirmed} record(s) missing in the MN history that no "
        "read of the MN confirms: the history for their time came only from an incremental "
        "pull, and the MN may have written them late. No batch was made. Pull the MN history "
        f"for the run's window again (cdrecon pull-history --since {summary.get('from')}) "
        "and reconcile again; the watch confirms its own runs"
    )


async def _freeze(conn: AsyncConnection, query: Select[Any], export_id: str) -> dict[str, Any]:
    """Freeze the records `query` chooses into batch `export_id`; the manifest's figures."""
    repository = ExportRepository.for_connection(conn)
    encoder = CsvEncoder()
    csv_hash, jsonl_hash = hashlib.sha256(encoder.header()), hashlib.sha256()
    total = seq = 0
    first = last = None
    result = await conn.stream(query.execution_options(yield_per=CHUNK))
    try:
        async for partition in result.mappings().partitions(CHUNK):
            frozen: list[dict[str, Any]] = []
            for row in partition:
                seq += 1
                record = record_from_cdr(row)
                text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
                # Both renderings are frozen, so a download only streams stored text.
                line = encoder.rows((record,)).decode()
                jsonl_hash.update(text.encode() + b"\n")
                csv_hash.update(line.encode())
                frozen.append(
                    {
                        "export_id": export_id,
                        "seq": seq,
                        "cdr_id": row["id"],
                        "record": text,
                        "csv_row": line,
                    }
                )
                total += row["duration"] or 0
                start = row["start_us"]
                if start is not None:
                    first = start if first is None else min(first, start)
                    last = start if last is None else max(last, start)
            await repository.insert_records(conn, frozen)
    finally:
        await result.close()
    return {
        "record_count": seq,
        "total_duration": total,
        "first_start_us": first,
        "last_start_us": last,
        "sha256_csv": csv_hash.hexdigest(),
        "sha256_jsonl": jsonl_hash.hexdigest(),
    }


async def _why_empty(
    conn: AsyncConnection, repository: ExportRepository, request: ExportRequest
) -> CdreconError:
    """Why `request` chose no records: there are none, or earlier batches hold them all."""
    count, batches = await repository.first_batches(
        conn, request.records(include_exported=True), limit=_NAMED_BATCHES + 1
    )
    if count == 0:
        return NothingToExport(f"there are no {request.describe()}; no batch was made")
    named = ", ".join(batches[:_NAMED_BATCHES]) + (", …" if len(batches) > _NAMED_BATCHES else "")
    held = f"batch {named}" if len(batches) == 1 else f"batches {named}"
    return AlreadyExported(
        f"all {count} {request.describe()} are already in {held}; "
        "pass include_exported to export them again"
    )


async def list_manifests(conn: AsyncConnection, limit: int) -> list[dict[str, Any]]:
    """The newest batches' manifests, newest first."""
    return (await page_manifests(conn, limit, None))[0]


async def page_manifests(
    conn: AsyncConnection, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of manifests, newest first, and the cursor of the next page (None on the last)."""
    before = decode_cursor(cursor, int, str) if cursor else None
    rows = await ExportRepository.for_connection(conn).newest(conn, limit + 1, before)
    rows, next_cursor = cut_page(rows, limit, lambda row: (row["created_us"], row["id"]))
    return [manifest(row) for row in rows], next_cursor


async def get_manifest(conn: AsyncConnection, export_id: str) -> dict[str, Any]:
    """A batch's manifest; NotFoundError if there is none."""
    row = await ExportRepository.for_connection(conn).get(conn, export_id)
    if row is None:
        raise NotFoundError(f"no export batch {export_id}")
    return manifest(row)


async def stream_export(
    engine: AsyncEngine, export_id: str, fmt: ExportFormat
) -> AsyncIterator[bytes]:
    """The batch's bytes, a chunk at a time, in constant memory; the same bytes every time."""
    repository = ExportRepository(engine.dialect.name)
    encoder = CsvEncoder()
    if fmt is ExportFormat.CSV:
        yield encoder.header()
    after = 0
    while True:
        async with engine.connect() as conn:
            rows = await repository.records(conn, export_id, after, CHUNK)
        if not rows:
            return
        after = rows[-1][0]
        if fmt is ExportFormat.CSV:
            yield "".join(line for _, _, line in rows).encode()
        else:
            yield "".join(record + "\n" for _, record, _ in rows).encode()


async def batches_holding(conn: AsyncConnection, cdr_ids: list[str]) -> dict[str, str]:
    """The batch each of these CDRs was first exported in, for those that are in one."""
    return await ExportRepository.for_connection(conn).batches_holding(conn, cdr_ids)


async def lost_per_run(conn: AsyncConnection, run_ids: list[int]) -> dict[int, tuple[int, int]]:
    """For each run, its lost (`missing_in_mn`) records and how many of them are in a batch."""
    return await ExportRepository.for_connection(conn).lost_per_run(
        conn, run_ids, Status.MISSING_IN_MN.value
    )


# What billing needs to recognise a record still to bill.
_REMAINING_COLUMNS = (
    "id",
    "conference_name",
    "display_name",
    "remote_alias",
    "local_alias",
    "node",
    "protocol",
    "start_us",
    "end_us",
    "duration",
)


async def remaining_to_bill(
    conn: AsyncConnection, run_ids: list[int], limit: int
) -> list[dict[str, Any]]:
    """The lost records of these runs that no batch holds yet, each once (with the newest
    of the runs that list it as `run_id`), by start time; at most `limit`, times as ISO."""
    rows = await ExportRepository.for_connection(conn).unexported(
        conn, run_ids, Status.MISSING_IN_MN.value, _REMAINING_COLUMNS, limit
    )
    newest: dict[str, dict[str, Any]] = {}
    for row in rows:
        seen = newest.get(row["id"])
        if seen is None or row["run_id"] > seen["run_id"]:
            newest[row["id"]] = row
    records = list(newest.values())
    for record in records:
        record["start"], record["end"] = iso(record.pop("start_us")), iso(record.pop("end_us"))
    return records
