"""The app factory: the FastAPI application with health, metrics, the v1 JSON API, the page."""

from __future__ import annotations

import math

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.api.deps import StateDep
from app.api.state import ServiceState
from app.audit.endpoints import router as audit_router
from app.auth.deps import admin, current_principal
from app.cdr.endpoints import router as cdr_router
from app.db import counts
from app.errors import API_ERRORS, install_handlers
from app.export.endpoints import router as export_router
from app.history.endpoints import router as history_router
from app.ingest.endpoints import router as ingest_router
from app.metrics import show_disk
from app.reconcile.endpoints import router as reconcile_router
from app.retention.budget import measure
from app.watch.endpoints import router as watch_router
from app.web.pages import router as web_router


def create_app(state: ServiceState) -> FastAPI:
    """An app serving `state`; the caller owns start-up and shutdown of what is behind it."""
    app = FastAPI(
        title="cdrecon",
        summary="Rebuilds Pexip Infinity CDRs lost by a Management Node restore from syslog.",
        version="0.1.0",
        # app.web serves /docs and /redoc from the installed assets, not a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = state
    install_handlers(app, retry_after=max(1, math.ceil(state.settings.request_database_wait)))

    @app.get("/healthz", tags=["operations"], summary="Liveness and database reachability")
    async def healthz(state: StateDep) -> Response:
        """200 when the database answers and takes the writer's batches, 503 otherwise."""
        if gone := state.database_file():
            # Checked first: a new connection would create an empty file at the path.
            return JSONResponse({"status": "unavailable", "database": gone}, status_code=503)
        try:
            async with state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any database failure is "unhealthy", with its reason
            return JSONResponse(
                {"status": "unavailable", "database": str(exc)[:200]}, status_code=503
            )
        if stalled := state.stalled():
            # It answers reads but takes no writes: read-only, full, locked.
            return JSONResponse({"status": "unavailable", "writer": stalled}, status_code=503)
        try:
            disk = await measure(state.engine, state.settings)
        except Exception as exc:  # a failed measurement is no failure of the service
            unmeasured = {"error": str(exc)[:200]}
            return JSONResponse({"status": "ok", "queued": state.queued(), "disk": unmeasured})
        show_disk(state.metrics, disk.database_bytes, disk.free_bytes, disk.exceeded)
        # Still 200: the service works; the warning is for whoever watches, before it stops.
        status = "warning" if disk.exceeded else "ok"
        return JSONResponse({"status": status, "queued": state.queued(), "disk": disk.as_json()})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics(request: Request, state: StateDep) -> Response:
        """Counters and histograms in the Prometheus text format (an admin token is needed
        when CDRECON_METRICS_PUBLIC is false)."""
        if not state.settings.metrics_public:
            await admin(await current_principal(request, state))
        try:
            async with state.engine.connect() as conn:
                rows = await counts.read(conn)
        except Exception:  # a scrape still answers the process's figures without the database
            rows = {}
        for table, n in rows.items():
            state.metrics.rows.labels(table).set(n)
        try:
            disk = await measure(state.engine, state.settings)
            show_disk(state.metrics, disk.database_bytes, disk.free_bytes, disk.exceeded)
        except Exception:  # as above: the last measurement stays
            pass
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    v1 = APIRouter(prefix="/api/v1", responses=API_ERRORS)
    v1.include_router(ingest_router)
    v1.include_router(cdr_router)
    v1.include_router(history_router)
    v1.include_router(reconcile_router)
    v1.include_router(export_router)
    v1.include_router(audit_router)
    v1.include_router(watch_router)
    app.include_router(v1)
    app.include_router(web_router)
    return app
