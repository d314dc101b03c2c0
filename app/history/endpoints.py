"""HTTP routes for MN history: upload an export."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile

from app.api.deps import ConnectionDep
from app.audit.service import record as audit
from app.auth.deps import AdminDep
from app.errors import InvalidInputError
from app.times import iso, to_us

from .coverage import Kind, import_export
from .schemas import HistoryImported, HistoryRejected

router = APIRouter(tags=["history"])

MAX_UPLOAD_BYTES = 512 * 1024 * 1024
READ_BYTES = 1024 * 1024

# The route reads its body itself (a raw document or a multipart form), so its accepted
# shapes are declared here for the OpenAPI document.
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/json": {"schema": {}},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


def _too_large() -> InvalidInputError:
    return InvalidInputError(f"upload larger than {MAX_UPLOAD_BYTES} bytes")


async def _raw_document(request: Request) -> bytes:
    """The request body as the document."""
    document = bytearray()
    async for part in request.stream():
        document += part
        if len(document) > MAX_UPLOAD_BYTES:
            raise _too_large()
    return bytes(document)


async def _form_document(request: Request) -> tuple[bytes, str | None]:
    """The `file` field of a multipart form (`curl -F file=@participants.json`), and the
    name it was sent with."""
    # The form is parsed whole before it can be measured: refuse what says it is too big.
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise _too_large()
    async with request.form(max_files=1, max_fields=10) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInputError("a multipart upload needs a `file` field: -F file=@mn.json")
        document = bytearray()
        while part := await upload.read(READ_BYTES):
            document += part
            if len(document) > MAX_UPLOAD_BYTES:
                raise _too_large()
        return bytes(document), upload.filename


@router.post(
    "/history",
    response_model=HistoryImported,
    summary="Upload MN history (JSON or CSV)",
    responses={422: {"model": HistoryRejected, "description": "Rejected whole; nothing stored"}},
    openapi_extra=_UPLOAD_BODY,
)
async def upload_history(
    request: Request,
    principal: AdminDep,
    conn: ConnectionDep,
    filename: Annotated[
        str | None,
        Query(description="Name recorded as the records' source (default: the form's file name)"),
    ] = None,
    as_of: Annotated[
        datetime | None,
        Query(description="When the export was made, if known; else its newest end_time"),
    ] = None,
) -> HistoryImported:
    """Store an MN participant/conference history export: the API's JSON (Tastypie envelope,
    list, or JSON lines) or a CSV with the API field names, as the raw body or as the `file`
    field of a multipart form. All or nothing. Records when the history is complete up to
    ("as of"): calls that ended after it are not counted lost."""
    sent_name = None
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        document, sent_name = await _form_document(request)
    else:
        document = await _raw_document(request)
    if not document.strip():
        raise InvalidInputError("empty upload")
    name = filename or sent_name or "upload"
    stored, complete = await import_export(
        conn, document, f"upload:{name}", Kind.UPLOAD, as_of_us=to_us(as_of)
    )
    as_of_us = None if complete is None else complete.us
    await audit(
        conn,
        principal.name,
        "history.import",
        stored.source,
        {
            "participants": stored.participants,
            "conferences": stored.conferences,
            "as_of": iso(as_of_us),
        },
        request.client.host if request.client else None,
    )
    return HistoryImported(
        source=stored.source,
        participants=stored.participants,
        conferences=stored.conferences,
        as_of=iso(as_of_us),
        as_of_basis=None if complete is None else complete.basis.value,
    )
