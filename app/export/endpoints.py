"""HTTP routes for export batches: create, describe, download."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.api.deps import ConnectionDep, StateDep
from app.audit.service import record as audit
from app.auth.deps import ReaderDep
from app.auth.tokens import Principal
from app.errors import ErrorBody, not_found
from app.paging import Page
from app.times import to_us

from . import service
from .schemas import Manifest
from .service import ExportFormat, ExportRequest

router = APIRouter(tags=["exports"])


class ExportBody(BaseModel):
    """What to export: a reconciliation run (by default its `missing_in_mn` records) or
    closed CDRs starting in a window, narrowed by filters (all off by default)."""

    run_id: int | None = Field(None, ge=1, le=2**63 - 1, examples=[1])
    status: str = Field("missing_in_mn", description="with run_id: which status to export")
    from_: datetime | None = Field(None, alias="from")
    until: datetime | None = None
    protocol: list[str] = Field(default_factory=list, examples=[["SIP", "WebRTC"]])
    service_type: str | None = None
    conference: str | None = None
    has_media: bool | None = None
    min_duration: int | None = Field(None, ge=0, le=2**31 - 1, description="seconds")
    include_exported: bool = Field(
        False, description="also records already in an earlier batch (off: exactly once)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ExportBody:
        if self.run_id is None and self.from_ is None and self.until is None:
            raise ValueError("give run_id, or a window with from/until")
        if self.run_id is not None and (self.from_ is not None or self.until is not None):
            raise ValueError("give run_id or a window, not both")
        return self

    def to_request(self) -> ExportRequest:
        """The service's request."""
        filters = self.model_dump(
            exclude={"run_id", "status", "from_", "until"}, exclude_defaults=True
        )
        return ExportRequest(
            run_id=self.run_id,
            status=self.status,
            from_us=to_us(self.from_),
            until_us=to_us(self.until),
            protocols=tuple(self.protocol),
            service_type=self.service_type,
            conference=self.conference,
            has_media=self.has_media,
            min_duration=self.min_duration,
            include_exported=self.include_exported,
            filters=filters,
        )


@router.post(
    "/exports",
    response_model=Manifest,
    summary="Create an export batch",
    responses={
        200: {
            "model": Manifest,
            "description": "The batch made earlier with the same Idempotency-Key",
        },
        201: {"description": "A new batch"},
        **not_found("No reconciliation run with that run_id"),
        409: {
            "model": ErrorBody,
            "description": "The Idempotency-Key was used for a different request, or every "
            "record asked for is in an earlier batch (the answer names it; include_exported "
            "exports them again), or `history_unconfirmed`: the run holds records missing in "
            "the MN history that only an incremental pull read (the MN may have written them "
            "late); pull the run's window again and reconcile again",
        },
        422: {
            "model": ErrorBody,
            "description": "An empty window (from >= until), or no records to export",
        },
    },
    status_code=201,
)
async def create_export(
    body: ExportBody,
    request: Request,
    response: Response,
    principal: ReaderDep,
    conn: ConnectionDep,
    runtime: StateDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Manifest:
    """Freeze a record set into a batch and return its manifest (count, total duration,
    first/last start, sha256 of each format). Records already exported are left out unless
    `include_exported` is set; a batch that would hold no records is not made."""
    client = request.client.host if request.client else None
    manifest, new = await create_batch(
        conn, runtime.engine, body, principal, client, idempotency_key
    )
    if not new:
        response.status_code = 200
    return Manifest.model_validate(manifest)


async def create_batch(
    conn: AsyncConnection,
    engine: AsyncEngine,
    body: ExportBody,
    principal: Principal,
    client: str | None,
    idempotency_key: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Create the batch `body` asks for and audit it as `principal`; (manifest, new). The
    API and the web console's billing page both create batches here."""
    manifest, new = await service.create_export(
        conn, engine, body.to_request(), principal.name, idempotency_key
    )
    if new:
        await audit(
            conn,
            principal.name,
            "export.create",
            manifest["id"],
            {
                **body.model_dump(mode="json", by_alias=True, exclude_defaults=True),
                "records": manifest["record_count"],
            },
            client,
        )
    return manifest, new


@router.get("/exports", response_model=Page[Manifest], summary="Recent export batches")
async def list_exports(
    _: ReaderDep,
    conn: ConnectionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> Page[Manifest]:
    """The batches' manifests, newest first."""
    manifests, next_cursor = await service.page_manifests(conn, limit, cursor)
    return Page[Manifest](
        items=[Manifest.model_validate(m) for m in manifests], next_cursor=next_cursor
    )


@router.get(
    "/exports/{export_id}",
    response_model=Manifest,
    summary="A batch's manifest",
    responses=not_found("No such batch"),
)
async def get_export(export_id: str, _: ReaderDep, conn: ConnectionDep) -> Manifest:
    """Id, creator, time, source, filters, record count, total duration, first and last start,
    and the sha256 of each download format."""
    return Manifest.model_validate(await service.get_manifest(conn, export_id))


@router.get(
    "/exports/{export_id}/download",
    summary="Download a batch",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}, "application/x-ndjson": {}}},
        **not_found("No such batch"),
    },
)
async def download_export(
    export_id: str,
    request: Request,
    principal: ReaderDep,
    runtime: StateDep,
    format: ExportFormat = ExportFormat.CSV,
) -> StreamingResponse:
    """The batch as CSV (RFC 4180, UTF-8, CRLF, header row) or JSON lines, streamed; the
    same bytes every time, matching the manifest's sha256."""
    async with runtime.engine.begin() as conn:
        await service.get_manifest(conn, export_id)
        await audit(
            conn,
            principal.name,
            "export.download",
            export_id,
            {"format": format.value},
            request.client.host if request.client else None,
        )
    media = "text/csv; charset=utf-8" if format is ExportFormat.CSV else "application/x-ndjson"
    return StreamingResponse(
        service.stream_export(runtime.engine, export_id, format),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="cdrecon-{export_id}.{format.value}"'
        },
    )
