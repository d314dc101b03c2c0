"""HTTP route for the audit log (admin only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.deps import ConnectionDep
from app.auth.deps import AdminDep
from app.times import iso

from . import service

router = APIRouter(tags=["audit"])


@router.get("/audit", summary="Who did what")
async def list_audit(
    _: AdminDep,
    conn: ConnectionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(description="entries older than this id")] = None,
) -> list[dict[str, Any]]:
    """Newest first: actor (token name), action, target, parameters, client address, time."""
    rows = await service.page(conn, limit, before)
    for row in rows:
        row["at"] = iso(row.pop("at_us"))
    return rows
