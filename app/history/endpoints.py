"""HTTP routes for MN history: upload an export."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile
from starlette.types import Message

from app.api.deps import StateDep
from app.api.state import ServiceState
from app.audit.service import record as audit
from app.auth.deps import AdminDep
from app.auth.tokens import Principal
from app.errors import ErrorBody, InvalidInputError, PayloadTooLargeError
from app.times import iso, to_us

from .schemas import DUPLICATES_SHOWN, HistoryImported, HistoryRejected
from .upload import import_upload

router = APIRouter(tags=["history"])

READ_BYTES = 1024 * 1024
# Bytes of a multipart body beyond its file: boundaries, headers, the other fields.
FORM_OVERHEAD = 64 * 1024
# A file name (from the form or `filename`) becomes the records' source.
NAME_MAX = 255

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


class _Spool:
    """The upload written to a temporary file as it arrives, never held whole in memory;
    refused (413) as soon as it passes the cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.blank = True  # nothing but white space so far
        self.file = tempfile.NamedTemporaryFile(prefix="cdrecon-upload-", delete=False)  # noqa: SIM115
        self.path = Path(self.file.name)

    def too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"upload larger than {self.limit} bytes (CDRECON_HISTORY_UPLOAD_MAX_BYTES); "
            "import large exports with `cdrecon import-history FILE`"
        )

    def check_declared(self, request: Request) -> None:
        """Refuse, before reading anything, a body that says it is too big."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            raise self.too_large()

    def write(self, part: bytes) -> None:
        self.size += len(part)
        if self.size > self.limit:
            raise self.too_large()
        self.file.write(part)
        self.blank = self.blank and not part.strip()

    def close(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


async def _spool_raw(request: Request, spool: _Spool) -> None:
    """The request body as the document."""
    async for part in request.stream():
        spool.write(part)


def _count_body(request: Request, limit: int, too_large: PayloadTooLargeError) -> None:
    """Refuse `request`'s body as soon as more than `limit` bytes of it arrived: a form is
    parsed (and its file spooled by Starlette) before its field can be measured. The same
    request object, so that the form it parses stays cached for later readers of its fields
    (the console's "made at")."""
    received = 0
    arrived = request.receive

    async def receive() -> Message:
        nonlocal received
        message = await arrived()
        received += len(message.get("body", b""))
        if received > limit:
            raise too_large
        return message

    request._receive = receive  # Starlette reads the body through it


async def _spool_form(request: Request, spool: _Spool) -> tuple[str | None, dict[str, str]]:
    """The `file` field of a multipart form (`curl -F file=@participants.json`); the name it
    was sent with, and the form's other (text) fields."""
    # The form's own framing is allowed a little room beyond the file's cap.
    _count_body(request, spool.limit + FORM_OVERHEAD, spool.too_large())
    async with request.form(max_files=1, max_fields=10) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInputError("a multipart upload needs a `file` field: -F file=@mn.json")
        while part := await upload.read(READ_BYTES):
            spool.write(part)
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        return upload.filename, fields


def _source_name(name: str) -> str:
    """`upload:<name>`, for a name both databases can store."""
    if "\x00" in name or len(name) > NAME_MAX:
        raise InvalidInputError(
            f"the upload's file name must be at most {NAME_MAX} characters, without NUL"
        )
    return f"upload:{name}"


@router.post(
    "/history",
    response_model=HistoryImported,
    summary="Upload MN history (JSON or CSV)",
    responses={
        413: {"model": ErrorBody, "description": "Larger than CDRECON_HISTORY_UPLOAD_MAX_BYTES"},
        422: {"model": HistoryRejected, "description": "Rejected whole; nothing stored"},
        503: {
            "model": ErrorBody,
            "description": "The database failed part way; upload again (records are replaced)",
        },
    },
    openapi_extra=_UPLOAD_BODY,
)
async def upload_history(
    request: Request,
    principal: AdminDep,
    state: StateDep,
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
    field of a multipart form, up to CDRECON_HISTORY_UPLOAD_MAX_BYTES (413 beyond). Every
    record or, if any is bad, none. An id found more than once is stored once (its last
    copy) and listed in `duplicate_ids`. Records when the history is complete up to ("as
    of"): calls that ended after it are not counted lost."""
    client = request.client.host if request.client else None
    return await import_sent(request, state, principal, filename, lambda _: to_us(as_of), client)


async def import_sent(
    request: Request,
    state: ServiceState,
    principal: Principal,
    filename: str | None,
    as_of: Callable[[Mapping[str, str]], int | None],
    client: str | None,
) -> HistoryImported:
    """Import the MN export `request` carries (raw body or multipart `file`) and audit it as
    `principal`. `as_of` is asked once the body is read, given a form's other fields (none
    for a raw body), which may say it. The API's route and the web console's upload form
    both import here."""
    spool = _Spool(state.settings.history_upload_max_bytes)
    try:
        spool.check_declared(request)
        sent_name: str | None = None
        fields: dict[str, str] = {}
        if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            sent_name, fields = await _spool_form(request, spool)
        else:
            await _spool_raw(request, spool)
        spool.file.close()
        source = _source_name(filename or sent_name or "upload")
        if spool.blank:
            raise InvalidInputError("empty upload")
        stored, complete = await import_upload(
            state.engine,
            state.settings.database_url,
            spool.path,
            spool.size,
            source,
            as_of_us=as_of(fields),
        )
    finally:
        spool.close()
    as_of_us = None if complete is None else complete.us
    async with state.engine.begin() as conn:
        await audit(
            conn,
            principal.name,
            "history.import",
            stored.source,
            {
                "participants": stored.participants,
                "conferences": stored.conferences,
                "duplicates": stored.duplicates,
                "as_of": iso(as_of_us),
            },
            client,
        )
    return HistoryImported(
        source=stored.source,
        participants=stored.participants,
        conferences=stored.conferences,
        duplicate_ids=stored.duplicate_ids[:DUPLICATES_SHOWN],
        duplicates=stored.duplicates,
        as_of=iso(as_of_us),
        as_of_basis=None if complete is None else complete.basis.value,
    )
