"""The reconciliation pages: the list of runs with the form that starts one (admin), and a
run's own page. Runs start through the same function as the API's route."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.api.deps import StateDep
from app.auth.tokens import Principal, Scope
from app.errors import CdreconError
from app.export.service import lost_per_run
from app.history import coverage as history_coverage
from app.paging import InvalidCursor
from app.reconcile.endpoints import start_run
from app.reconcile.schemas import RunRequest
from app.reconcile.service import RunNotFinished, RunNotFound, newest_runs

from .history_state import HistoryView, load_history
from .overview import RunCard, run_card, run_url
from .render import render
from .run import ITEMS_PER_PAGE, UnknownStatus, load_run_page
from .session import cross_site, posted_form, signed_in

RUNS_LISTED = 50
# Who may start a run: the API's rule for POST /api/v1/reconciliations.
RUN_SCOPE = Scope.ADMIN

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run in the list, with how many of its lost records are billed already."""

    card: RunCard
    exported: int


@dataclass
class FormState:
    """A form's values as typed and its messages: per field, and for the whole form."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # about the whole form
    done: str | None = None  # what the form did, when it worked


@dataclass(frozen=True, slots=True)
class RunsPage:
    """Everything on /runs for one principal."""

    principal: Principal
    may_run: bool
    runs: list[RunRow]
    history: HistoryView | None  # the overview's MN history block, for admin as there
    run_form: FormState
    history_form: FormState


def default_run_form(now: datetime | None = None) -> FormState:
    """The form as first shown: the last seven days to the current hour, 2 s tolerance."""
    until = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    start = until - timedelta(days=7)
    return FormState(
        values={
            "from": start.strftime("%Y-%m-%dT%H:%MZ"),
            "until": until.strftime("%Y-%m-%dT%H:%MZ"),
            "tolerance": "2s",
        }
    )


async def load_runs_page(
    conn: AsyncConnection,
    principal: Principal,
    run_form: FormState | None = None,
    history_form: FormState | None = None,
) -> RunsPage:
    """The newest runs, the history's reach, and the two forms (as given, or fresh)."""
    may_run = principal.scope in (RUN_SCOPE, Scope.ADMIN)
    cards = [run_card(summary) for summary in await newest_runs(conn, RUNS_LISTED)]
    billed = await lost_per_run(conn, [card.id for card in cards])
    return RunsPage(
        principal=principal,
        may_run=may_run,
        runs=[RunRow(card, billed.get(card.id, (0, 0))[1]) for card in cards],
        history=await load_history(conn) if may_run else None,
        run_form=run_form or default_run_form(),
        history_form=history_form or FormState(),
    )


def read_run_form(fields: dict[str, str]) -> tuple[RunRequest | None, FormState]:
    """The run the form asks for, validated as the API validates its body, or None and the
    messages to show next to each field."""
    values = {name: fields.get(name, "").strip() for name in ("from", "until", "tolerance")}
    values["force"] = "on" if fields.get("force") else ""
    form = FormState(values=values)
    for name in ("from", "until"):
        if not values[name]:
            form.errors[name] = "Required: a UTC time such as 2026-11-26T00:00Z."
    if not values["tolerance"]:
        values["tolerance"] = "2s"
    if form.errors:
        return None, form
    try:
        request = RunRequest.model_validate(
            {
                "from": values["from"],
                "until": values["until"],
                "tolerance": values["tolerance"],
                "force": bool(values["force"]),
            }
        )
    except ValidationError as exc:
        for problem in exc.errors():
            name = str(problem["loc"][0]) if problem["loc"] else "form"
            message = str(problem["msg"]).removeprefix("Value error, ")
            if name in ("from", "until"):
                message = f"Not a time: {message}. Write it like 2026-11-26T00:00Z (UTC)."
            form.errors.setdefault(name, message[:300])
        return None, form
    if request.until <= request.from_:
        form.errors["until"] = "Must be after the start of the window."
        return None, form
    return request, form


@router.get("/runs", response_class=HTMLResponse)
async def runs_page(request: Request, state: StateDep) -> HTMLResponse:
    """The runs, newest first; for admins, the forms that import MN history and start a run."""
    async with state.engine.connect() as conn:
        principal = await signed_in(request, conn, status_code=401)
        if isinstance(principal, HTMLResponse):
            return principal
        view = await load_runs_page(conn, principal)
    return render("runs.html", principal=principal, view=view, current="runs")


@router.post("/runs", response_class=HTMLResponse)
async def start_run_form(request: Request, state: StateDep) -> Response:
    """Start a run from the form; its page, or the form again with what to correct."""
    async with state.engine.connect() as conn:
        principal = await signed_in(request, conn, status_code=401, scope=RUN_SCOPE)
    if isinstance(principal, HTMLResponse):
        return principal
    # A form shown again with what to correct is a page like any other (200): browsers
    # log every other status as an error.
    status_code = 200
    if cross_site(request):
        body, form = None, FormState(error="A run must be started from this site's own form.")
        status_code = 403
    else:
        body, form = read_run_form(await posted_form(request))
    if body is not None:
        client = request.client.host if request.client else None
        try:
            summary = await start_run(state.engine, body, principal, client)
        except history_coverage.HistoryNotCovered as exc:
            form.error = str(exc)
            form.errors["force"] = (
                "No MN history covers this window. Import it below, or tick this to count "
                "every unmatched call as lost."
            )
        except CdreconError as exc:
            form.error = str(exc)
        else:
            return RedirectResponse(run_url(int(summary["id"])), status_code=303)
    async with state.engine.connect() as conn:
        view = await load_runs_page(conn, principal, run_form=form)
    return render(
        "runs.html", status_code=status_code, principal=principal, view=view, current="runs"
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(
    request: Request,
    state: StateDep,
    run_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    status: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = ITEMS_PER_PAGE,
) -> HTMLResponse:
    """A run's summary, timeline and records, a page at a time, of one status or all; for
    any token that may read runs (admin and billing)."""
    async with state.engine.connect() as conn:
        principal = await signed_in(request, conn, status_code=401)
        if isinstance(principal, HTMLResponse):
            return principal
        try:
            view = await load_run_page(conn, run_id, status or None, cursor or None, limit)
        except RunNotFound:
            return _run_error(principal, run_id, f"There is no reconciliation run {run_id}.", 404)
        except RunNotFinished as exc:
            # Still running, or failed: nothing of it to show yet (never a half-run).
            text = str(exc)
            return _run_error(principal, run_id, f"{text[:1].upper()}{text[1:]}.", 409)
        except UnknownStatus:
            return _run_error(principal, run_id, f"Run {run_id} has no status {status!r}.", 400)
        except InvalidCursor:
            return _run_error(
                principal, run_id, "That page link is not valid; start from the first page.", 400
            )
    return render("run.html", principal=principal, view=view, current="runs")


def _run_error(principal: Principal, run_id: int, error: str, status_code: int) -> HTMLResponse:
    return render(
        "run_error.html",
        status_code=status_code,
        principal=principal,
        error=error,
        first_url=run_url(run_id) if status_code == 400 else None,
    )
