"""HTTP route for the audit log (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ConnectionDep
from app.auth.deps import AdminDep
from app.paging import Page

from . import service
from .schemas import AuditEntry

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=Page[AuditEntry], summary="Who did what")
async def list_audit(
    _: AdminDep,
    conn: ConnectionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Page[AuditEntry]:
    """Newest first: actor (token name), action, target, parameters, client address, time."""
    rows, next_cursor = await service.page(conn, limit, cursor)
    return Page[AuditEntry](
        items=[AuditEntry.model_validate(row) for row in rows], next_cursor=next_cursor
    )
