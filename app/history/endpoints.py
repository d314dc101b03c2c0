"""HTTP routes for MN history: upload an export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from app.api.deps import ConnectionDep
from app.audit.service import record as audit
from app.auth.deps import AdminDep
from app.errors import InvalidInputError

from . import service

router = APIRouter(tags=["history"])

MAX_UPLOAD_BYTES = 512 * 1024 * 1024


class HistoryImported(BaseModel):
    """What an upload stored."""

    source: str
    participants: int
    conferences: int


@router.post(
    "/history",
    response_model=HistoryImported,
    summary="Upload MN history (JSON or CSV)",
    responses={422: {"description": "Rejected whole; `errors` lists each bad record"}},
)
async def upload_history(
    request: Request,
    principal: AdminDep,
    conn: ConnectionDep,
    filename: Annotated[str, Query(description="Name recorded as the records' source")] = "upload",
) -> HistoryImported:
    """Store an MN participant/conference history export: the API's JSON (Tastypie envelope,
    list, or JSON lines) or a CSV with the API field names. All or nothing."""
    document = bytearray()
    async for part in request.stream():
        document += part
        if len(document) > MAX_UPLOAD_BYTES:
            raise InvalidInputError(f"upload larger than {MAX_UPLOAD_BYTES} bytes")
    if not document.strip():
        raise InvalidInputError("empty upload")
    stored = await service.import_document(conn, bytes(document), f"upload:{filename}")
    await audit(
        conn,
        principal.name,
        "history.import",
        stored.source,
        {"participants": stored.participants, "conferences": stored.conferences},
        request.client.host if request.client else None,
    )
    return HistoryImported(
        source=stored.source, participants=stored.participants, conferences=stored.conferences
    )
