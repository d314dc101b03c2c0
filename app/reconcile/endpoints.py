"""HTTP routes for reconciliation runs and their items."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from app.api.deps import ConnectionDep, RuntimeDep
from app.audit.service import record as audit
from app.auth.deps import AdminDep, ReaderDep
from app.cdr.service import derive_pending
from app.times import to_us

from . import service
from .matching import Status

router = APIRouter(tags=["reconciliation"])


class RunRequest(BaseModel):
    """A half-open window [from, until) and the matching tolerance."""

    from_: datetime = Field(alias="from", examples=["2026-11-20T00:00:00Z"])
    until: datetime = Field(examples=["2026-11-27T00:00:00Z"])
    tolerance: float = Field(2.0, ge=0, le=3600, description="seconds")


class ItemPage(BaseModel):
    """A page of a run's items; pass `next_cursor` back as `cursor`."""

    items: list[dict[str, Any]]
    next_cursor: int | None


@router.post("/reconciliations", status_code=201, summary="Run a reconciliation")
async def create_run(
    body: RunRequest,
    request: Request,
    principal: AdminDep,
    runtime: RuntimeDep,
    conn: ConnectionDep,
) -> dict[str, Any]:
    """Match syslog CDRs against MN records over the window; the summary with counts by
    status and the restore gaps."""
    from_us, until_us = to_us(body.from_), to_us(body.until)
    assert from_us is not None and until_us is not None
    # The syslog CDRs must be complete: derive what the writer deferred and has not caught up
    # on yet (in transactions of their own: `conn` only reads them afterwards).
    await derive_pending(runtime.engine)
    summary = await service.reconcile(
        conn, from_us, until_us, round(body.tolerance * 1_000_000), principal.name
    )
    await audit(
        conn,
        principal.name,
        "reconciliation.run",
        str(summary["id"]),
        {"from": summary["from"], "until": summary["until"], "tolerance": body.tolerance},
        request.client.host if request.client else None,
    )
    return summary


@router.get("/reconciliations/{run_id}", summary="A run's summary")
async def get_run(run_id: int, _: ReaderDep, conn: ConnectionDep) -> dict[str, Any]:
    """Counts, gaps and input bounds of a stored run."""
    return await service.get_summary(conn, run_id)


@router.get("/reconciliations/{run_id}/items", response_model=ItemPage, summary="A run's items")
async def list_items(
    run_id: int,
    _: ReaderDep,
    conn: ConnectionDep,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    cursor: Annotated[int, Query(ge=0)] = 0,
) -> ItemPage:
    """Every CDR and MN record of the run with its status (a matched pair is one item)."""
    items, next_cursor = await service.page_items(
        conn, run_id, status.value if status else None, cursor, limit
    )
    return ItemPage(items=items, next_cursor=next_cursor)
