"""HTTP routes for the watch's alerts: list, read, records, acknowledge."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from app.api.deps import ConnectionDep, StateDep
from app.audit.service import record as audit
from app.auth.deps import AdminDep
from app.errors import not_found
from app.paging import Page

from . import service
from .policy import Kind, State
from .schemas import Alert, AlertRecord

router = APIRouter(tags=["alerts"])

AlertId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("/alerts", response_model=Page[Alert], summary="The watch's alerts")
async def list_alerts(
    _: AdminDep,
    conn: ConnectionDep,
    state: State | None = None,
    kind: Kind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Page[Alert]:
    """Alerts newest first, optionally only open or cleared ones, or of one kind."""
    alerts, next_cursor = await service.page_alerts(
        conn, state.value if state else None, kind.value if kind else None, cursor, limit
    )
    return Page[Alert](items=[Alert.model_validate(a) for a in alerts], next_cursor=next_cursor)


@router.get(
    "/alerts/{alert_id}",
    response_model=Alert,
    summary="One alert",
    responses=not_found("No such alert"),
)
async def get_alert(alert_id: AlertId, _: AdminDep, conn: ConnectionDep) -> Alert:
    """An alert's window, counts and state."""
    return Alert.model_validate(await service.get_alert(conn, alert_id))


@router.get(
    "/alerts/{alert_id}/records",
    response_model=Page[AlertRecord],
    summary="An alert's records",
    responses=not_found("No such alert"),
)
async def list_records(
    alert_id: AlertId,
    _: AdminDep,
    conn: ConnectionDep,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    cursor: str | None = None,
) -> Page[AlertRecord]:
    """The records the alert is about, in call-end order."""
    records, next_cursor = await service.page_records(conn, alert_id, cursor, limit)
    return Page[AlertRecord](
        items=[AlertRecord.model_validate(r) for r in records], next_cursor=next_cursor
    )


@router.post(
    "/alerts/{alert_id}/ack",
    response_model=Alert,
    summary="Acknowledge an alert",
    responses=not_found("No such alert"),
)
async def acknowledge(
    alert_id: AlertId,
    request: Request,
    principal: AdminDep,
    conn: ConnectionDep,
    state: StateDep,
) -> Alert:
    """Clear an open alert on your word (an alert already cleared is returned unchanged); its
    records stay listed, and a later growth of the gap opens it again."""
    alert, changed = await service.acknowledge(
        conn, alert_id, principal.name, time.time_ns() // 1000
    )
    if changed:
        await audit(
            conn,
            principal.name,
            "alert.acknowledge",
            str(alert_id),
            {"kind": alert["kind"], "count": alert["count"]},
            request.client.host if request.client else None,
        )
        await service.publish(conn, state.metrics)
    return Alert.model_validate(alert)


@router.post(
    "/alerts/{alert_id}/confirm",
    response_model=Alert,
    summary="Confirm a restore: its records count as lost",
    responses=not_found("No such alert"),
)
async def confirm(
    alert_id: AlertId, request: Request, principal: AdminDep, conn: ConnectionDep
) -> Alert:
    """Say the MN really lost a restore alert's records: they leave cdrecon's copy of the MN
    history (the alert keeps them as they were), so the next run, the watch's or yours,
    counts their calls `missing_in_mn`, opens a gap alert for them, and a batch can export
    them. 422 for a gap alert. Confirming again changes nothing."""
    alert, removed = await service.confirm_restore(conn, alert_id)
    if removed:
        await audit(
            conn,
            principal.name,
            "alert.confirm_restore",
            str(alert_id),
            {"records": removed},
            request.client.host if request.client else None,
        )
    return Alert.model_validate(alert)
