"""What the overview page shows, read through the same service functions as the API."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.tokens import Principal, Scope
from app.export.service import ExportFormat, list_manifests, lost_per_run
from app.ingest.schemas import Stats
from app.ingest.stats import get_stats, list_nodes
from app.reconcile.matching import Status
from app.reconcile.service import newest_runs
from app.retention.budget import DiskState

from .history_state import HistoryView, load_history
from .moment import Moment
from .traffic import NodeTraffic, load_traffic

SILENT_AFTER = timedelta(minutes=15)
RUNS_SHOWN = 10
EXPORTS_SHOWN = 20

# Counts in the order a reader looks for them; missing_in_mn is shown on its own.
STATUS_ORDER = [s.value for s in Status if s is not Status.MISSING_IN_MN]
STATUS_LABELS = {
    Status.MATCHED.value: "matched",
    Status.MISSING_IN_MN.value: "missing in MN",
    Status.MISSING_IN_SYSLOG.value: "missing in syslog",
    Status.MISMATCHED.value: "mismatched",
    Status.OUTSIDE_RETENTION.value: "outside MN retention",
    Status.AFTER_HISTORY.value: "after the MN history",
    Status.OPEN.value: "still open",
    Status.EXCLUDED.value: "excluded",
    Status.UNCONFIRMED.value: "missing in MN, unconfirmed",
}


@dataclass(frozen=True, slots=True)
class NodeRow:
    """One sending host, flagged when it has been silent for longer than SILENT_AFTER."""

    host: str
    last_peer: str | None
    last_transport: str
    last_seen: Moment
    silent_for: str | None  # "42 min", when silent
    messages: int
    parse_failures: int


@dataclass(frozen=True, slots=True)
class GapRow:
    """A stretch of records the MN lost."""

    start: Moment | None
    until: Moment | None
    count: int
    nodes: list[str]
    last_kept_before: Moment | None = None  # the MN's records either side of the gap
    first_kept_after: Moment | None = None


@dataclass(frozen=True, slots=True)
class RunCard:
    """A reconciliation run as the page shows it."""

    id: int
    created_at: Moment | None
    created_by: str | None
    start: Moment | None
    until: Moment | None
    missing_in_mn: int
    counts: list[tuple[str, int]]
    gaps: list[GapRow]
    missing_url: str  # the JSON list
    page_url: str
    missing_page_url: str
    exported: int = 0  # lost records already in a batch: not to bill again


@dataclass(frozen=True, slots=True)
class ExportRow:
    """An export batch with its download links."""

    id: str
    created_by: str
    created_at: Moment | None
    record_count: int
    total_duration: int
    duration_text: str
    source: str
    downloads: list[tuple[str, str, str]]  # (label, url, sha256)


@dataclass(frozen=True, slots=True)
class Overview:
    """Everything on the page for one principal; admin-only parts are None for billing."""

    principal: Principal
    now: Moment
    stats: Stats | None
    nodes: list[NodeRow] | None
    silent_nodes: int
    runs: list[RunCard]
    exports: list[ExportRow]
    disk: DiskTile | None = None  # admins only
    # Admin only (None for billing): the traffic chart and the MN history block.
    traffic: list[NodeTraffic] | None = None
    history: HistoryView | None = None


@dataclass(frozen=True, slots=True)
class DiskTile:
    """The database's size and its disk's free space, as shown, with the disk budget's
    warnings (app/retention/budget.py)."""

    size: str
    free: str | None  # None on PostgreSQL: the server's disk
    warnings: tuple[str, ...]


def size_text(count: int) -> str:
    """Bytes as people read them: `812 KiB`, `3.4 GiB`."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def disk_tile(state: DiskState) -> DiskTile:
    """What the overview shows of one disk budget measurement."""
    free = None if state.free_bytes is None else size_text(state.free_bytes)
    return DiskTile(size_text(state.database_bytes), free, state.warnings)


def status_label(status: str) -> str:
    """A run status in words ("missing_in_mn" -> "missing in MN")."""
    return STATUS_LABELS.get(status, status.replace("_", " "))


def silence(last_seen: datetime, now: datetime) -> str | None:
    """How long a node has been silent ("42 min", "3 h 05 min", "2 d 4 h"), or None when it
    was heard from within SILENT_AFTER."""
    quiet = now - last_seen
    if quiet <= SILENT_AFTER:
        return None
    minutes = int(quiet.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def hms(seconds: int) -> str:
    """Whole seconds as h:mm:ss (hours unbounded), the way billing reads call time."""
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def run_url(
    run_id: int, status: str | None = None, cursor: str | None = None, limit: int | None = None
) -> str:
    """The run page, filtered to `status`, at `cursor`, `limit` records a page."""
    query = {k: v for k, v in (("status", status), ("cursor", cursor), ("limit", limit)) if v}
    return f"/runs/{run_id}" + (f"?{urlencode(query)}" if query else "")


def download_url(export_id: str, fmt: ExportFormat) -> str:
    """The API's download route for a batch; the session cookie authorises it."""
    return f"/api/v1/exports/{quote(export_id, safe='')}/download?format={fmt.value}"


def _count(value: Any) -> int:
    return value if isinstance(value, int) else 0


def run_card(summary: dict[str, Any]) -> RunCard:
    """A stored run summary (`app.reconcile.service.reconcile`'s result) as a card."""
    counts: dict[str, Any] = summary.get("counts") or {}
    ordered = [(status, _count(counts.get(status))) for status in STATUS_ORDER]
    ordered += [
        (str(status), _count(n))
        for status, n in sorted(counts.items())
        if status not in STATUS_ORDER and status != Status.MISSING_IN_MN.value
    ]
    run_id = int(summary["id"])
    return RunCard(
        id=run_id,
        created_at=Moment.of(summary.get("created_at")),
        created_by=summary.get("created_by"),
        start=Moment.of(summary.get("from")),
        until=Moment.of(summary.get("until")),
        missing_in_mn=_count(counts.get(Status.MISSING_IN_MN.value)),
        counts=ordered,
        gaps=[
            GapRow(
                start=Moment.of(gap.get("from")),
                until=Moment.of(gap.get("until")),
                count=_count(gap.get("count")),
                nodes=[str(node) for node in gap.get("nodes") or []],
                last_kept_before=Moment.of(gap.get("last_kept_before")),
                first_kept_after=Moment.of(gap.get("first_kept_after")),
            )
            for gap in summary.get("gaps") or []
        ],
        missing_url=f"/api/v1/reconciliations/{run_id}/items?status={Status.MISSING_IN_MN.value}",
        page_url=run_url(run_id),
        missing_page_url=run_url(run_id, Status.MISSING_IN_MN.value),
    )


def export_row(batch: dict[str, Any]) -> ExportRow:
    """A batch manifest (`app.export.service.manifest`) as a table row."""
    source: dict[str, Any] = batch.get("source") or {}
    if source.get("run_id") is not None:
        status = str(source.get("status") or Status.MISSING_IN_MN.value)
        described = f"run {source['run_id']}: {status_label(status)}"
    else:
        described = "closed CDRs in a window"
    sha256: dict[str, str] = batch.get("sha256") or {}
    total = int(batch.get("total_duration") or 0)
    return ExportRow(
        id=str(batch["id"]),
        created_by=str(batch["created_by"]),
        created_at=Moment.of(batch.get("created_at")),
        record_count=int(batch.get("record_count") or 0),
        total_duration=total,
        duration_text=hms(total),
        source=described,
        downloads=[
            (fmt.value.upper(), download_url(str(batch["id"]), fmt), sha256.get(fmt.value, ""))
            for fmt in ExportFormat
        ],
    )


async def load_overview(
    conn: AsyncConnection, principal: Principal, queued: int, now: datetime | None = None
) -> Overview:
    """Read what `principal` may see: receiver figures and nodes for admin tokens, runs and
    export batches for every token."""
    now = now or datetime.now(UTC)
    stats: Stats | None = None
    nodes: list[NodeRow] | None = None
    if principal.scope is Scope.ADMIN:
        stats = await get_stats(conn, queued)
        nodes = []
        for node in await list_nodes(conn):
            seen = Moment.of(node.last_seen)
            assert seen is not None
            nodes.append(
                NodeRow(
                    host=node.host,
                    last_peer=node.last_peer,
                    last_transport=node.last_transport,
                    last_seen=seen,
                    silent_for=silence(node.last_seen, now),
                    messages=node.messages,
                    parse_failures=node.parse_failures,
                )
            )
    traffic: list[NodeTraffic] | None = None
    history: HistoryView | None = None
    if nodes is not None:
        traffic = await load_traffic(conn, [node.host for node in nodes], now)
        history = await load_history(conn)
    runs = [run_card(summary) for summary in await newest_runs(conn, RUNS_SHOWN)]
    billed = await lost_per_run(conn, [run.id for run in runs])
    runs = [replace(run, exported=billed.get(run.id, (0, 0))[1]) for run in runs]
    batches = await list_manifests(conn, EXPORTS_SHOWN)
    now_moment = Moment.of(now)
    assert now_moment is not None
    return Overview(
        principal=principal,
        now=now_moment,
        stats=stats,
        nodes=nodes,
        silent_nodes=sum(1 for node in nodes or [] if node.silent_for),
        runs=runs,
        exports=[export_row(batch) for batch in batches],
        traffic=traffic,
        history=history,
    )
