"""HTTP routes for CDRs and conferences."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ConnectionDep
from app.auth.deps import ReaderDep
from app.errors import NotFoundError, not_found
from app.paging import Page
from app.times import to_time, to_us

from . import queries
from .schemas import Cdr, CdrDetail, Conference, Event

router = APIRouter(tags=["cdrs"])

FromQuery = Annotated[datetime | None, Query(alias="from", description="start ≥ this (UTC)")]
UntilQuery = Annotated[datetime | None, Query(description="start < this (UTC)")]


@router.get("/cdrs", response_model=Page[Cdr], summary="Participant CDRs rebuilt from syslog")
async def list_cdrs(
    _: ReaderDep,
    conn: ConnectionDep,
    from_: FromQuery = None,
    until: UntilQuery = None,
    conference: str | None = None,
    protocol: str | None = None,
    state: Annotated[str | None, Query(pattern="^(open|closed|failed|excluded)$")] = None,
    alias: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=255,
            description="remote or local alias contains this (case-insensitive)",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Page[Cdr]:
    """CDRs whose start (or first event, for failed legs) is in `[from, until)`, in a stable
    order; page with `cursor`."""
    rows, next_cursor = await queries.page_cdrs(
        conn,
        limit=limit,
        cursor=cursor,
        from_us=to_us(from_),
        until_us=to_us(until),
        conference=conference,
        protocol=protocol,
        state=state,
        alias=alias,
    )
    return Page[Cdr](items=[Cdr.from_row(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/cdrs/{participant_id}",
    response_model=CdrDetail,
    summary="One CDR with its events",
    responses=not_found("No CDR for this participant id"),
)
async def get_cdr(participant_id: str, _: ReaderDep, conn: ConnectionDep) -> CdrDetail:
    """The CDR of one leg and every event it was assembled from."""
    found = await queries.get_cdr(conn, participant_id)
    if found is None:
        raise NotFoundError(f"no CDR for participant {participant_id}")
    leg, events = found
    return CdrDetail(
        **Cdr.from_row(leg).model_dump(),
        events=[
            Event(
                time=to_time(e["time_us"]),
                node=e["node"],
                level=e["level"],
                name=e["name"],
                message=e["message"],
                fields=e["fields"],
                truncated=bool(e["truncated"]),
                message_ids=e["message_ids"],
            )
            for e in events
        ],
    )


@router.get("/conferences", response_model=list[Conference], summary="Conference instances")
async def list_conferences(
    _: ReaderDep, conn: ConnectionDep, from_: FromQuery = None, until: UntilQuery = None
) -> list[Conference]:
    """Conference instances (first join to last leave over all nodes) starting in the window."""
    instances = await queries.list_conferences(conn, to_us(from_), to_us(until))
    return [
        Conference(
            name=i.name,
            start_time=to_time(i.start_us),
            end_time=to_time(i.end_us),
            participant_count=i.participant_count,
            nodes=sorted(i.nodes),
        )
        for i in instances
    ]
