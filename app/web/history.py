"""The MN history upload form of the reconciliation page: the API's upload, read and
imported by the same functions, with its answer shown next to the form."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import TypeAdapter, ValidationError

from app.api.deps import StateDep
from app.errors import CdreconError, InvalidInputError
from app.history.endpoints import import_sent
from app.history.service import HistoryImportError
from app.times import to_us

from .render import render
from .runs import RUN_SCOPE, FormState, load_runs_page
from .session import cross_site, signed_in

# Importing history is admin work, as in the API (POST /api/v1/history).
HISTORY_SCOPE = RUN_SCOPE
SHOWN_RECORD_ERRORS = 5

router = APIRouter(include_in_schema=False)
_moment = TypeAdapter(datetime)


class AsOfRefused(InvalidInputError):
    """The form's "made at" is not a time."""


def _form_as_of(form: FormState) -> Callable[[Mapping[str, str]], int | None]:
    """Reads the form's optional "made at" once the upload is read, as the API reads its
    `as_of` parameter; keeps what was typed, to show it again."""

    def as_of(fields: Mapping[str, str]) -> int | None:
        text = fields.get("as_of", "").strip()
        form.values["as_of"] = text
        if not text:
            return None
        try:
            return to_us(_moment.validate_python(text))
        except ValidationError:
            raise AsOfRefused(
                "Not a time: write it like 2026-11-27T09:00Z (UTC), or leave it empty."
            ) from None

    return as_of


def _rejected(exc: CdreconError, form: FormState) -> None:
    """The refusal shown next to the file: the reason, and the first bad records."""
    if isinstance(exc, HistoryImportError):
        lines = [
            f"record {e.row}{f' ({e.record_id})' if e.record_id else ''}"
            f"{f', field {e.field}' if e.field else ''}: {e.reason}"
            for e in exc.errors[:SHOWN_RECORD_ERRORS]
        ]
        more = len(exc.errors) - SHOWN_RECORD_ERRORS
        form.errors["file"] = (
            f"Refused: {len(exc.errors):,} bad record(s), nothing imported. "
            + "; ".join(lines)
            + (f"; and {more:,} more." if more > 0 else ".")
        )
    else:
        form.errors["file"] = f"Refused, nothing imported: {exc}."


@router.post("/history", response_class=HTMLResponse)
async def upload_history_form(request: Request, state: StateDep) -> HTMLResponse:
    """Import the uploaded MN export; the reconciliation page with what was stored, or
    why nothing was."""
    async with state.engine.connect() as conn:
        principal = await signed_in(request, conn, status_code=401, scope=HISTORY_SCOPE)
    if isinstance(principal, HTMLResponse):
        return principal
    form = FormState()
    status_code = 200
    if cross_site(request):
        form.error = "MN history must be uploaded from this site's own form."
        status_code = 403
    elif not request.headers.get("content-type", "").startswith("multipart/form-data"):
        form.errors["file"] = "Choose a file to upload."
    else:
        client = request.client.host if request.client else None
        try:
            imported = await import_sent(request, state, principal, None, _form_as_of(form), client)
        except AsOfRefused as exc:
            form.errors["as_of"] = str(exc)
        except InvalidInputError as exc:
            if str(exc).startswith("as of "):  # `coverage.decide` refused the "made at"
                form.errors["as_of"] = f"{str(exc)[:1].upper()}{str(exc)[1:]}."
            else:
                _rejected(exc, form)
        except CdreconError as exc:
            _rejected(exc, form)
        else:
            form.values.clear()
            form.done = (
                f"Imported {imported.source}: {imported.participants:,} participant and "
                f"{imported.conferences:,} conference records"
                + (
                    f" ({imported.duplicates:,} ids found twice, stored once)"
                    if imported.duplicates
                    else ""
                )
                + f"; the history is complete up to {imported.as_of or 'an unknown time'}"
                + (f" ({imported.as_of_basis})." if imported.as_of_basis else ".")
            )
    async with state.engine.connect() as conn:
        view = await load_runs_page(conn, principal, history_form=form)
    return render(
        "runs.html", status_code=status_code, principal=principal, view=view, current="runs"
    )
