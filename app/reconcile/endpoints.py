"""HTTP routes for reconciliation runs and their items."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.api.deps import ConnectionDep, StateDep
from app.audit.service import record as audit
from app.auth.deps import AdminDep, ReaderDep
from app.auth.tokens import Principal
from app.errors import ErrorBody, not_found
from app.paging import Page
from app.times import to_us

from . import service
from .matching import Status
from .schemas import Item, RunRequest, RunSummary

router = APIRouter(tags=["reconciliation"])

RunId = Annotated[int, Path(ge=1, le=2**63 - 1)]

# What a run that is not done answers, on every route that reads one.
_READ_RESPONSES = {
    **not_found("No such run"),
    409: {
        "model": ErrorBody,
        "description": "The run is still running, or failed (`run_not_finished`, with the "
        "reason): it has no summary or items yet",
    },
}


@router.post(
    "/reconciliations",
    response_model=RunSummary,
    status_code=201,
    summary="Run a reconciliation",
    responses={
        409: {
            "model": ErrorBody,
            "description": "No MN history covers the window (`history_not_covered`): import or "
            "pull it, or force the run",
        }
    },
)
async def create_run(
    body: RunRequest,
    request: Request,
    principal: AdminDep,
    state: StateDep,
) -> RunSummary:
    """Match syslog CDRs against MN records over the window; the summary with counts by
    status and the restore gaps."""
    client = request.client.host if request.client else None
    return RunSummary.model_validate(await start_run(state.engine, body, principal, client))


async def start_run(
    engine: AsyncEngine, body: RunRequest, principal: Principal, client: str | None
) -> dict[str, Any]:
    """Run the reconciliation `body` asks for and audit it as `principal`, in the
    transaction that finishes the run; its summary. The API and the web console's form
    both start runs here."""
    from_us, until_us = to_us(body.from_), to_us(body.until)
    assert from_us is not None and until_us is not None

    async def audited(conn: AsyncConnection, summary: dict[str, Any]) -> None:
        await audit(
            conn,
            principal.name,
            "reconciliation.run",
            str(summary["id"]),
            {
                "from": summary["from"],
                "until": summary["until"],
                "tolerance": body.tolerance,
                "forced": summary["coverage"]["forced"],
            },
            client,
        )

    return await service.reconcile(
        engine,
        from_us,
        until_us,
        round(body.tolerance * 1_000_000),
        principal.name,
        force=body.force,
        then=audited,
    )


@router.get(
    "/reconciliations/{run_id}",
    response_model=RunSummary,
    summary="A run's summary",
    responses=_READ_RESPONSES,
)
async def get_run(run_id: RunId, _: ReaderDep, conn: ConnectionDep) -> RunSummary:
    """Counts, gaps and input bounds of a stored run."""
    return RunSummary.model_validate(await service.get_summary(conn, run_id))


@router.get(
    "/reconciliations/{run_id}/items",
    response_model=Page[Item],
    summary="A run's items",
    responses=_READ_RESPONSES,
)
async def list_items(
    run_id: RunId,
    _: ReaderDep,
    conn: ConnectionDep,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    cursor: str | None = None,
) -> Page[Item]:
    """Every CDR and MN record of the run with its status (a matched pair is one item)."""
    items, next_cursor = await service.page_items(
        conn, run_id, status.value if status else None, cursor, limit
    )
    return Page[Item](items=[Item.model_validate(item) for item in items], next_cursor=next_cursor)
