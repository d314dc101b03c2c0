"""HTTP routes for ingest figures: /api/v1/stats and /api/v1/nodes."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ConnectionDep, StateDep
from app.auth.deps import AdminDep

from .schemas import Node, Stats
from .stats import get_stats, list_nodes

router = APIRouter(tags=["ingest"])


@router.get("/stats", response_model=Stats, summary="Totals of the store")
async def stats(_: AdminDep, conn: ConnectionDep, state: StateDep) -> Stats:
    """Messages stored, parse failures, events and CDRs derived, nodes seen."""
    return await get_stats(conn, state.queued())


@router.get("/nodes", response_model=list[Node], summary="Sending hosts")
async def nodes(_: AdminDep, conn: ConnectionDep) -> list[Node]:
    """Every host that sent syslog: first and last seen, message count, parse failures."""
    return await list_nodes(conn)
