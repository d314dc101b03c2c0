"""The watch's work on the database: a run over the settled window, alerts opened, grown and
cleared from what the policy decides, acknowledgements, and the figures the gauges show."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import InvalidInputError, NotFoundError
from app.history import coverage as history_coverage
from app.metrics import Metrics
from app.paging import cut_page, decode_cursor
from app.reconcile.matching import Status
from app.reconcile.service import delete_run, reconcile
from app.times import iso, to_us

from . import repository
from .policy import (
    EXPORTED,
    FOUND,
    Decision,
    Fire,
    Kind,
    LostRecord,
    SeenGap,
    State,
    decide,
    gap_records,
    settled_window,
)

log = logging.getLogger(__name__)

# A watch run's `created_by`, so that runs and audit entries show who made them.
WATCH = "watch"


class AlertNotFound(NotFoundError):
    """No alert with that id."""

    def __init__(self, alert_id: int) -> None:
        super().__init__(f"no alert {alert_id}")


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """How the watch judges: settle time, window and matching tolerance, in µs."""

    settle_us: int
    window_us: int
    tolerance_us: int = 2_000_000


@dataclass(frozen=True, slots=True)
class Notice:
    """A change to an alert, to log and send: `opened`, `grown` or `cleared`; `added` is how
    many records a growth added."""

    event: str
    alert: dict[str, Any]
    added: int = 0


def describe(row: dict[str, Any]) -> dict[str, Any]:
    """An alert as the API, the log and the webhook show it."""
    return {
        "id": row["id"],
        "kind": row["kind"],
        "state": row["state"],
        "first_seen": iso(row["first_seen_us"]),
        "updated": iso(row["updated_us"]),
        "cleared": iso(row["cleared_us"]),
        "cleared_by": row["cleared_by"],
        "from": iso(row["from_us"]),
        "until": iso(row["until_us"]),
        "last_kept_before": iso(row["before_us"]),
        "first_kept_after": iso(row["after_us"]),
        "count": row["record_count"],
        "nodes": [node for node in row["nodes"].split(",") if node],
        "run_id": row["run_id"],
        "source": row["source"],
    }


# Reads the MN again for the end_time windows [from, until) given (µs) and records them
# read: `history.pulling.confirm_once` with the watch's connection.
Confirm = Callable[[list[tuple[int, int]]], Awaitable[object]]


async def reconcile_settled(
    engine: AsyncEngine, config: WatchConfig, now_us: int, confirm: Confirm | None = None
) -> tuple[dict[str, Any] | None, list[Notice]]:
    """Reconcile the settled part of the newest history's window, stored as a run like a
    manual one, and turn its gaps into alert changes in the transaction that finishes the
    run (a run that fails changes no alert); the run's summary (None when no history is
    recorded yet) and the changes.

    Only confirmed lost records make gaps. When the run holds `unconfirmed` ones (the
    history for their time came from an incremental pull, which misses what the MN writes
    late), `confirm` reads their windows from the MN again and the window is reconciled
    once more: the MN's late records then match, the rest are confirmed lost. The summary
    is the last run's; a failed confirmation leaves them unconfirmed (no alert)."""
    async with engine.connect() as conn:
        as_of_us = (await history_coverage.read(conn)).as_of_us
    window = settled_window(as_of_us, config.settle_us, config.window_us)
    if window is None:
        return None, []
    from_us, until_us = window
    notices: list[Notice] = []

    async def alert(conn: AsyncConnection, summary: dict[str, Any]) -> None:
        bounds = [
            (
                _us(g["from"]),
                _us(g["until"]),
                _maybe_us(g["last_kept_before"]),
                _maybe_us(g["first_kept_after"]),
            )
            for g in summary["gaps"]
        ]
        lost = await repository.lost_records(conn, summary["id"])
        gaps = gap_records(bounds, lost, window)
        alerts = await repository.alerts_near(conn, Kind.GAP, from_us)
        decisions = decide(alerts, gaps)
        notices.extend(await apply(conn, Kind.GAP, decisions, now_us, run_id=summary["id"]))

    async def run() -> dict[str, Any]:
        return await reconcile(
            engine,
            from_us,
            until_us,
            config.tolerance_us,
            created_by=WATCH,
            as_of_cap_us=until_us,
            then=alert,
        )

    summary = await run()
    if confirm is not None and summary["counts"].get(Status.UNCONFIRMED.value):
        async with engine.connect() as conn:
            ends = [
                r.write_us
                for r in await repository.lost_records(
                    conn, summary["id"], Status.UNCONFIRMED.value
                )
            ]
        try:
            await confirm(history_coverage.confirm_windows(ends, config.tolerance_us))
        except Exception:
            # They stay unconfirmed (no alert, no batch); the next run confirms them.
            log.warning(
                "watch: the confirming pull for run %d failed", summary["id"], exc_info=True
            )
            return summary, notices
        summary = await run()
    return summary, notices


def _us(text: str) -> int:
    """An ISO 8601 time of a run's summary as epoch µs."""
    return int(to_us(datetime.fromisoformat(text)) or 0)


def _maybe_us(text: str | None) -> int | None:
    return None if text is None else _us(text)


async def apply(
    conn: AsyncConnection,
    kind: Kind,
    decisions: list[Decision],
    now_us: int,
    *,
    run_id: int | None = None,
    source: str | None = None,
) -> list[Notice]:
    """Store what the policy decided; a notice for each change."""
    notices = []
    for decision in decisions:
        if isinstance(decision, Fire):
            alert_id = await _open(conn, kind, decision.gap, now_us, run_id, source)
            event, added = "opened", len(decision.gap.records)
        else:
            row = await repository.get_alert(conn, decision.alert_id)
            assert row is not None
            await repository.add_records(conn, decision.alert_id, decision.added)
            nodes = {n for n in row["nodes"].split(",") if n}
            nodes.update(r.node for r in decision.added if r.node)
            await repository.update_alert(
                conn,
                decision.alert_id,
                {
                    "state": State.OPEN.value,
                    "updated_us": now_us,
                    "cleared_us": None,
                    "cleared_by": None,
                    "from_us": decision.from_us,
                    "until_us": decision.until_us,
                    "before_us": decision.before_us,
                    "after_us": decision.after_us,
                    "reach_from_us": decision.region[0],
                    "reach_until_us": decision.region[1],
                    "record_count": row["record_count"] + len(decision.added),
                    "nodes": ",".join(sorted(nodes)),
                    "run_id": run_id if run_id is not None else row["run_id"],
                },
            )
            alert_id, event, added = decision.alert_id, "grown", len(decision.added)
        row = await repository.get_alert(conn, alert_id)
        assert row is not None
        notices.append(Notice(event, describe(row), added))
    return notices


async def _open(
    conn: AsyncConnection,
    kind: Kind,
    gap: SeenGap,
    now_us: int,
    run_id: int | None,
    source: str | None,
) -> int:
    alert_id = await repository.insert_alert(
        conn,
        {
            "kind": kind.value,
            "state": State.OPEN.value,
            "first_seen_us": now_us,
            "updated_us": now_us,
            "from_us": gap.from_us,
            "until_us": gap.until_us,
            "before_us": gap.before_us,
            "after_us": gap.after_us,
            "reach_from_us": gap.region[0],
            "reach_until_us": gap.region[1],
            "record_count": len(gap.records),
            "nodes": ",".join(sorted({r.node for r in gap.records if r.node})),
            "run_id": run_id,
            "source": source,
        },
    )
    await repository.add_records(conn, alert_id, gap.records)
    return alert_id


async def record_vanished(
    engine: AsyncEngine, url: str, vanished: dict[str, int], low_us: int, now_us: int
) -> list[Notice]:
    """Alert on MN records held at an earlier pull from `url` that it no longer returns
    (id -> end time), first seen now; `low_us` is where the check started looking."""
    if not vanished:
        return []
    gap = SeenGap(tuple(LostRecord(i, end) for i, end in sorted(vanished.items())))
    async with engine.begin() as conn:
        alerts = await repository.alerts_near(conn, Kind.RESTORE, low_us)
        return await apply(conn, Kind.RESTORE, decide(alerts, [gap]), now_us, source=url)


async def prune_superseded(engine: AsyncEngine, before_us: int) -> int:
    """Delete the watch's own runs made before `before_us` that later runs superseded (see
    `repository.superseded_runs`), a few thousand items a transaction; how many went. Each
    run judges the whole window again, so without this a day's window run hourly would
    store every leg 24 times."""
    async with engine.connect() as conn:
        runs = await repository.superseded_runs(conn, WATCH, before_us, 100)
    for run_id in runs:
        await delete_run(engine, run_id)
    return len(runs)


async def clear_resolved(engine: AsyncEngine, now_us: int) -> list[Notice]:
    """Clear the open alerts whose every record is in an export batch, and the open gap
    alerts whose every record the MN has written since (late)."""
    notices = []
    async with engine.begin() as conn:
        exported = await repository.exported_open_alerts(conn)
        found = [i for i in await repository.found_open_gaps(conn) if i not in exported]
        for alert_id, reason in [(i, EXPORTED) for i in exported] + [(i, FOUND) for i in found]:
            notices.append(Notice("cleared", await _clear(conn, alert_id, reason, now_us)))
    return notices


async def _clear(conn: AsyncConnection, alert_id: int, by: str, now_us: int) -> dict[str, Any]:
    """Clear one alert, `by` a reason or a person; the alert as it now is."""
    await repository.update_alert(
        conn,
        alert_id,
        {
            "state": State.CLEARED.value,
            "cleared_us": now_us,
            "cleared_by": by,
            "updated_us": now_us,
        },
    )
    row = await repository.get_alert(conn, alert_id)
    assert row is not None
    return describe(row)


async def acknowledge(
    conn: AsyncConnection, alert_id: int, who: str, now_us: int
) -> tuple[dict[str, Any], bool]:
    """Clear an alert on someone's word; the alert, and whether this changed it (acknowledging
    a cleared alert again changes nothing)."""
    row = await repository.get_alert(conn, alert_id)
    if row is None:
        raise AlertNotFound(alert_id)
    if row["state"] != State.OPEN.value:
        return describe(row), False
    return await _clear(conn, alert_id, who, now_us), True


class NotARestore(InvalidInputError):
    """Only a restore alert names MN records the MN no longer holds."""


async def confirm_restore(conn: AsyncConnection, alert_id: int) -> tuple[dict[str, Any], int]:
    """An admin confirms the MN lost a restore alert's records: they leave the MN store (the
    alert keeps them as they were held), so that a run counts their calls `missing_in_mn`
    and they can be exported like any lost record. The alert, and how many records left
    (none when confirmed before)."""
    row = await repository.get_alert(conn, alert_id)
    if row is None:
        raise AlertNotFound(alert_id)
    if row["kind"] != Kind.RESTORE.value:
        raise NotARestore(
            f"alert {alert_id} is a {row['kind']} alert: only a restore alert's records are "
            "held MN records to take out of the store"
        )
    return describe(row), await repository.forget_held(conn, alert_id)


async def get_alert(conn: AsyncConnection, alert_id: int) -> dict[str, Any]:
    """One alert."""
    row = await repository.get_alert(conn, alert_id)
    if row is None:
        raise AlertNotFound(alert_id)
    return describe(row)


async def page_alerts(
    conn: AsyncConnection, state: str | None, kind: str | None, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Alerts newest first, and the cursor of the next (older) page."""
    before = decode_cursor(cursor, int)[0] if cursor else None
    rows = await repository.page_alerts(conn, state, kind, before, limit + 1)
    rows, next_cursor = cut_page(rows, limit, lambda row: (row["id"],))
    return [describe(row) for row in rows], next_cursor


async def page_records(
    conn: AsyncConnection, alert_id: int, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """An alert's records (CDR ids for a gap, MN record ids for a restore) in write order."""
    after = decode_cursor(cursor, int, str) if cursor else None  # a bad request before a lookup
    if await repository.get_alert(conn, alert_id) is None:
        raise AlertNotFound(alert_id)
    rows = await repository.page_records(
        conn, alert_id, None if after is None else (after[0], after[1]), limit + 1
    )
    rows, next_cursor = cut_page(rows, limit, lambda row: (row["time_us"], row["record_id"]))
    return [{"id": row["record_id"], "time": iso(row["time_us"])} for row in rows], next_cursor


@dataclass(frozen=True, slots=True)
class Figures:
    """What the watch gauges show: open alerts and their records, per kind, and when the
    oldest open restore alert was first seen."""

    gaps_open: int = 0
    gap_records: int = 0
    restores_open: int = 0
    restore_records: int = 0
    restore_first_seen_us: int | None = None


async def figures(conn: AsyncConnection) -> Figures:
    """The gauges' figures from the stored alerts."""
    found = await repository.open_figures(conn)
    gaps = found.get(Kind.GAP.value, (0, 0, None))
    restores = found.get(Kind.RESTORE.value, (0, 0, None))
    return Figures(gaps[0], gaps[1], restores[0], restores[1], restores[2])


async def publish(conn: AsyncConnection, metrics: Metrics) -> Figures:
    """Set the watch gauges from the stored alerts; the figures set."""
    found = await figures(conn)
    metrics.gap_open.set(found.gaps_open)
    metrics.missing_in_mn.set(found.gap_records)
    metrics.restore_open.set(found.restores_open)
    metrics.restore_records.set(found.restore_records)
    first = found.restore_first_seen_us
    metrics.restore_first_seen.set(0 if first is None else first / 1_000_000)
    return found
