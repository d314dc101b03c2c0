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

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.cdr.deriving import derive_pending
from app.errors import CdreconError, InvalidInputError, NotFoundError
from app.paging import cut_page, decode_cursor
from app.times import iso

from .formats import CsvEncoder, record_from_cdr
from .repository import ExportRepository, candidates

CHUNK = 2000


class ExportFormat(StrEnum):
    """Download formats."""

    CSV = "csv"
    JSONL = "jsonl"


class IdempotencyConflict(CdreconError):
    """The Idempotency-Key was used before for a different request."""

    status = 409
    code = "idempotency_conflict"


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

    The records are read through a connection of their own and frozen into `conn`'s
    transaction a chunk at a time, so memory stays flat however large the batch. A window
    reads CDRs: what a busy writer deferred is derived first, in transactions of its own,
    before `conn` reads anything (on SQLite, a transaction that has read cannot write once
    another has committed).
    """
    if request.run_id is None:
        await derive_pending(engine)
    repository = ExportRepository()
    fingerprint = request.fingerprint()
    if idempotency_key:
        existing = await repository.by_idempotency_key(conn, idempotency_key)
        if existing is not None:
            if json.loads(existing["filters"]).get("_request") != fingerprint:
                raise IdempotencyConflict(
                    f"Idempotency-Key {idempotency_key!r} was used for a different request"
                )
            return manifest(existing), False
    if request.run_id is None and request.from_us is None and request.until_us is None:
        raise InvalidInputError("say what to export: a reconciliation run, or a time window")
    export_id = f"exp_{time.strftime('%Y%m%d')}_{secrets.token_hex(6)}"
    query = candidates(
        run_id=request.run_id,
        status=request.status,
        from_us=request.from_us,
        until_us=request.until_us,
        protocols=request.protocols,
        service_type=request.service_type,
        conference=request.conference,
        has_media=request.has_media,
        min_duration=request.min_duration,
        include_exported=request.include_exported,
    )
    encoder = CsvEncoder()
    csv_hash, jsonl_hash = hashlib.sha256(encoder.header()), hashlib.sha256()
    total = seq = 0
    first = last = None
    async with engine.connect() as reader:
        result = await reader.stream(query.execution_options(yield_per=CHUNK))
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
        await result.close()
    count = seq
    values = {
        "id": export_id,
        "created_us": time.time_ns() // 1000,
        "created_by": actor,
        "idempotency_key": idempotency_key,
        "source": json.dumps(request.source()),
        "filters": json.dumps({**request.filters, "_request": fingerprint}),
        "record_count": count,
        "total_duration": total,
        "first_start_us": first,
        "last_start_us": last,
        "sha256_csv": csv_hash.hexdigest(),
        "sha256_jsonl": jsonl_hash.hexdigest(),
    }
    await repository.insert_batch(conn, values)
    return manifest(values), True


async def list_manifests(conn: AsyncConnection, limit: int) -> list[dict[str, Any]]:
    """The newest batches' manifests, newest first."""
    return (await page_manifests(conn, limit, None))[0]


async def page_manifests(
    conn: AsyncConnection, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of manifests, newest first, and the cursor of the next page (None on the last)."""
    before = decode_cursor(cursor, int, str) if cursor else None
    rows = await ExportRepository().newest(conn, limit + 1, before)
    rows, next_cursor = cut_page(rows, limit, lambda row: (row["created_us"], row["id"]))
    return [manifest(row) for row in rows], next_cursor


async def get_manifest(conn: AsyncConnection, export_id: str) -> dict[str, Any]:
    """A batch's manifest; NotFoundError if there is none."""
    row = await ExportRepository().get(conn, export_id)
    if row is None:
        raise NotFoundError(f"no export batch {export_id}")
    return manifest(row)


async def stream_export(
    engine: AsyncEngine, export_id: str, fmt: ExportFormat
) -> AsyncIterator[bytes]:
    """The batch's bytes, a chunk at a time, in constant memory; the same bytes every time."""
    repository = ExportRepository()
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
