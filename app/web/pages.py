"""HTTP routes of the browser pages: the overview at `/` and a run at `/runs/{id}`, and
the one router (`router`) that gathers every page, the session and the API explorer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from app.api.deps import StateDep
from app.auth.tokens import Principal
from app.paging import InvalidCursor
from app.reconcile.service import RunNotFound

from .cdrs import router as cdrs_router
from .explorer import router as explorer_router
from .overview import load_overview, run_url
from .render import render
from .render import router as assets_router
from .run import ITEMS_PER_PAGE, UnknownStatus, load_run_page
from .session import router as session_router
from .session import signed_in
from .tokens import router as tokens_router

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, state: StateDep) -> HTMLResponse:
    """The overview for the signed-in token, or the sign-in form."""
    async with state.engine.connect() as conn:
        principal = await signed_in(request, conn)
        if isinstance(principal, HTMLResponse):
            return principal
        view = await load_overview(conn, principal, state.queued())
    return render("overview.html", view=view, current="overview")


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(
    request: Request,
    state: StateDep,
    run_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    status: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = ITEMS_PER_PAGE,
) -> HTMLResponse:
    """A run's summary and its records, a page at a time, of one status or all; for any
    token that may read runs (admin and billing)."""
    async with state.engine.connect() as conn:
        principal = await signed_in(request, conn, status_code=401)
        if isinstance(principal, HTMLResponse):
            return principal
        try:
            view = await load_run_page(conn, run_id, status or None, cursor or None, limit)
        except RunNotFound:
            return _run_error(principal, run_id, f"There is no reconciliation run {run_id}.", 404)
        except UnknownStatus:
            return _run_error(principal, run_id, f"Run {run_id} has no status {status!r}.", 400)
        except InvalidCursor:
            return _run_error(
                principal, run_id, "That page link is not valid; start from the first page.", 400
            )
    return render("run.html", principal=principal, view=view)


def _run_error(principal: Principal, run_id: int, error: str, status_code: int) -> HTMLResponse:
    return render(
        "run_error.html",
        status_code=status_code,
        principal=principal,
        error=error,
        first_url=run_url(run_id) if status_code != 404 else None,
    )


# Every browser route, in one router for the app to include.
router.include_router(session_router)
router.include_router(assets_router)
router.include_router(explorer_router)
router.include_router(tokens_router)
router.include_router(cdrs_router)
