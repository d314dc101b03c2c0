"""HTTP routes of the browser pages: the overview at `/`, and the one router (`router`)
that gathers every page, the session and the API explorer."""

from __future__ import annotations

import contextlib
from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.api.deps import StateDep
from app.retention.budget import measure

from .billing import router as billing_router
from .cdrs import router as cdrs_router
from .explorer import router as explorer_router
from .history import router as history_router
from .overview import disk_tile, load_overview
from .render import render
from .render import router as assets_router
from .runs import router as runs_router
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
    if view.stats is not None:  # admins: the disk budget too
        # A failed measurement leaves the tile out, not the page.
        with contextlib.suppress(Exception):
            view = replace(view, disk=disk_tile(await measure(state.engine, state.settings)))
    return render("overview.html", view=view, current="overview")


# Every browser route, in one router for the app to include.
router.include_router(session_router)
router.include_router(assets_router)
router.include_router(explorer_router)
router.include_router(tokens_router)
router.include_router(cdrs_router)
router.include_router(runs_router)
router.include_router(history_router)
router.include_router(billing_router)
