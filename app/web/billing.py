"""The billing page: what remains to bill (lost records no batch holds yet, across runs),
the form that makes a batch of them, and the batches with their manifests and downloads.
Batches are made by the same function as the API's route, with the same guards."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.api.deps import StateDep
from app.auth.tokens import Principal, Scope
from app.errors import CdreconError
from app.export.endpoints import ExportBody, create_batch
from app.export.service import lost_per_run, page_manifests, remaining_to_bill
from app.paging import InvalidCursor
from app.reconcile.matching import Status
from app.reconcile.service import newest_runs

from .moment import Moment
from .overview import ExportRow, export_row, hms, run_card, run_url
from .render import render
from .runs import FormState
from .session import cross_site, posted_form, signed_in

# Who may make batches: the API's rule for POST /api/v1/exports (any token; admin too).
BATCH_SCOPE = Scope.BILLING
RUNS_CONSIDERED = 50
REMAINING_SHOWN = 500
BATCHES_PER_PAGE = 25

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class RemainingRun:
    """A run's lost records that no batch holds yet."""

    run_id: int
    page_url: str
    lost: int  # all the run's lost records
    remaining: int
    total_duration: str  # h:mm:ss of the remaining ones shown
    # Records the run could not confirm lost: its lost records are refused a batch until a
    # run without them (app/export/service.py, HistoryUnconfirmed).
    unconfirmed: int = 0


@dataclass(frozen=True, slots=True)
class RemainingRow:
    """A lost record still to bill."""

    run_id: int
    cdr_id: str
    conference: str | None
    participant: str | None
    alias: str | None
    node: str | None
    protocol: str | None
    start: Moment | None
    end: Moment | None
    duration: str | None


@dataclass(frozen=True, slots=True)
class BatchRow:
    """A batch as the billing page lists it: the overview's row and the rest of its manifest."""

    row: ExportRow
    first_start: Moment | None
    last_start: Moment | None
    filters: list[tuple[str, str]]
    sha256: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class BillingPage:
    """Everything on /billing."""

    principal: Principal
    runs: list[RemainingRun]  # runs with something left to bill
    records: list[RemainingRow]
    more_records: bool  # more than REMAINING_SHOWN remain
    older_runs: bool  # runs older than the RUNS_CONSIDERED newest exist, and are not looked at
    runs_considered: int
    run_choices: list[int]  # runs the form offers, newest first
    form: FormState
    key: str  # the form's Idempotency-Key: a resubmitted form makes no second batch
    batches: list[BatchRow]  # deliveries: batches holding records
    empty_batches: list[BatchRow]  # never deliveries; listed apart
    created: str | None  # the batch just made
    next_url: str | None
    first_url: str | None


def _batch(manifest: dict[str, Any]) -> BatchRow:
    filters = manifest.get("filters") or {}
    sha256 = manifest.get("sha256") or {}
    return BatchRow(
        row=export_row(manifest),
        first_start=Moment.of(manifest.get("first_start_time")),
        last_start=Moment.of(manifest.get("last_start_time")),
        # `_request` is the service's bookkeeping, not a filter a person chose.
        filters=[(str(k), str(v)) for k, v in filters.items() if not str(k).startswith("_")],
        sha256=[(str(k), str(v)) for k, v in sha256.items()],
    )


def _remaining_row(record: dict[str, Any]) -> RemainingRow:
    duration = record.get("duration")
    return RemainingRow(
        run_id=int(record["run_id"]),
        cdr_id=str(record["id"]),
        conference=record.get("conference_name"),
        participant=record.get("display_name"),
        alias=record.get("remote_alias") or record.get("local_alias"),
        node=record.get("node"),
        protocol=record.get("protocol"),
        start=Moment.of(record.get("start")),
        end=Moment.of(record.get("end")),
        duration=hms(duration) if isinstance(duration, int) else None,
    )


async def load_billing_page(
    conn: AsyncConnection,
    principal: Principal,
    form: FormState | None = None,
    created: str | None = None,
    cursor: str | None = None,
) -> BillingPage:
    """What remains to bill over the newest runs, and a page of batches."""
    newest = await newest_runs(conn, RUNS_CONSIDERED + 1)
    cards = [run_card(summary) for summary in newest[:RUNS_CONSIDERED]]
    run_ids = [card.id for card in cards]
    unconfirmed = {card.id: dict(card.counts).get(Status.UNCONFIRMED.value, 0) for card in cards}
    lost = await lost_per_run(conn, run_ids)
    found = await remaining_to_bill(conn, run_ids, REMAINING_SHOWN + 1)
    records = [_remaining_row(record) for record in found[:REMAINING_SHOWN]]
    per_run: dict[int, list[RemainingRow]] = {}
    durations: dict[int, int] = {}
    for record, found_record in zip(records, found, strict=False):
        per_run.setdefault(record.run_id, []).append(record)
        seconds = found_record.get("duration")
        durations[record.run_id] = durations.get(record.run_id, 0) + (
            seconds if isinstance(seconds, int) else 0
        )
    remaining = [
        RemainingRun(
            run_id=run_id,
            page_url=run_url(run_id, "missing_in_mn"),
            lost=lost.get(run_id, (0, 0))[0],
            remaining=len(rows),
            total_duration=hms(durations[run_id]),
            unconfirmed=unconfirmed.get(run_id, 0),
        )
        for run_id, rows in sorted(per_run.items(), reverse=True)
    ]
    manifests, next_cursor = await page_manifests(conn, BATCHES_PER_PAGE, cursor)
    batches = [_batch(m) for m in manifests]
    return BillingPage(
        principal=principal,
        runs=remaining,
        records=records,
        more_records=len(found) > REMAINING_SHOWN,
        older_runs=len(newest) > RUNS_CONSIDERED,
        runs_considered=RUNS_CONSIDERED,
        run_choices=run_ids,
        form=form or FormState(values={"source": "run"}),
        key=secrets.token_urlsafe(18),
        batches=[b for b in batches if b.row.record_count > 0],
        empty_batches=[b for b in batches if b.row.record_count == 0],
        created=created,
        next_url=f"/billing?cursor={next_cursor}#batches" if next_cursor else None,
        first_url="/billing#batches" if cursor else None,
    )


_FIELDS = ("source", "run_id", "from", "until", "conference", "protocol", "min_duration")


def read_batch_form(fields: dict[str, str]) -> tuple[ExportBody | None, FormState]:
    """The batch the form asks for, validated as the API validates its body, or None and
    the messages to show next to each field."""
    values = {name: fields.get(name, "").strip() for name in _FIELDS}
    form = FormState(values=values)
    body: dict[str, Any] = {}
    if values["source"] == "window":
        for name in ("from", "until"):
            if values[name]:
                body[name] = values[name]
        if not body:
            form.errors["from"] = "Give the start or the end of the window (UTC), or both."
    else:
        if not values["run_id"]:
            form.errors["run_id"] = "Choose a run."
        body["run_id"] = values["run_id"] or None
    if values["conference"]:
        body["conference"] = values["conference"]
    if values["protocol"]:
        body["protocol"] = [p.strip() for p in values["protocol"].split(",") if p.strip()]
    if values["min_duration"]:
        body["min_duration"] = values["min_duration"]
    if form.errors:
        return None, form
    try:
        return ExportBody.model_validate(body), form
    except ValidationError as exc:
        for problem in exc.errors():
            name = str(problem["loc"][0]) if problem["loc"] else ""
            message = str(problem["msg"]).removeprefix("Value error, ")
            if name not in _FIELDS:
                form.error = message
            else:
                form.errors.setdefault(name, message)
        return None, form


@router.get("/billing", response_class=HTMLResponse)
async def billing_page(
    request: Request, state: StateDep, batch: str | None = None, cursor: str | None = None
) -> HTMLResponse:
    """What remains to bill, the batch form, and the batches."""
    async with state.engine.connect() as conn:
        principal = await signed_in(request, conn, status_code=401, scope=BATCH_SCOPE)
        if isinstance(principal, HTMLResponse):
            return principal
        try:
            view = await load_billing_page(conn, principal, created=batch, cursor=cursor)
        except InvalidCursor:
            view = await load_billing_page(conn, principal, created=batch)
    return render("billing.html", principal=principal, view=view, current="billing")


@router.post("/billing/batches", response_class=HTMLResponse)
async def create_batch_form(request: Request, state: StateDep) -> Response:
    """Make a batch from the form; the billing page showing it, or the form again with
    what to correct (nothing made)."""
    async with state.engine.connect() as conn:
        principal = await signed_in(request, conn, status_code=401, scope=BATCH_SCOPE)
    if isinstance(principal, HTMLResponse):
        return principal
    # A form shown again with what to correct is a page like any other (200): browsers
    # log every other status as an error.
    status_code = 200
    fields = await posted_form(request)
    if cross_site(request):
        body, form = None, FormState(error="A batch must be made from this site's own form.")
        status_code = 403
    else:
        body, form = read_batch_form(fields)
    if body is not None:
        key = fields.get("key") or None
        client = request.client.host if request.client else None
        try:
            async with state.engine.begin() as conn:
                manifest, _ = await create_batch(
                    conn, state.engine, body, principal, client, key and key[:255]
                )
        except CdreconError as exc:
            form.error = f"No batch was made: {exc}."
        else:
            return RedirectResponse(f"/billing?batch={manifest['id']}", status_code=303)
    async with state.engine.connect() as conn:
        view = await load_billing_page(conn, principal, form=form)
    return render(
        "billing.html", status_code=status_code, principal=principal, view=view, current="billing"
    )
