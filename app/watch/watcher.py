"""What `serve` does after each scheduled MN history pull when the watch is on: the restore
check, a run over the settled window when one is due, exported alerts cleared, the gauges,
and a log line and a webhook call for each alert change."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.history.client import MNConnection
from app.history.pulling import confirm_once
from app.metrics import Metrics

from .policy import Kind
from .restore import ClientProbe, HistoryProbe, vanished
from .service import (
    Confirm,
    Notice,
    WatchConfig,
    clear_resolved,
    prune_superseded,
    publish,
    reconcile_settled,
)
from .service import record_vanished as record_vanished_records
from .webhook import Webhook, body

log = logging.getLogger(__name__)
T = TypeVar("T")


class Watcher:
    """The watch of one `serve` process, fed by its pull schedule."""

    def __init__(
        self,
        engine: AsyncEngine,
        config: WatchConfig,
        url: str,
        probe: HistoryProbe,
        metrics: Metrics,
        *,
        interval: float = 0.0,
        webhook: Webhook | None = None,
        confirm: Confirm | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.url = url
        self.probe = probe
        self.metrics = metrics
        self.interval = interval
        self.webhook = webhook
        self.confirm = confirm
        self._last_run: float | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        engine: AsyncEngine,
        metrics: Metrics,
        password: str,
        secret: bytes | None,
    ) -> Watcher:
        """The watch `settings` describe (the MN password and webhook secret read already)."""
        connection = MNConnection(
            settings.mn_url, settings.mn_user, password, ca_bundle=settings.mn_ca_bundle
        )
        webhook = None
        if settings.watch_webhook_url.strip():
            webhook = Webhook(settings.watch_webhook_url.strip(), secret)
        config = WatchConfig(
            settle_us=round(settings.watch_settle * 1_000_000),
            window_us=round(settings.watch_window * 1_000_000),
        )
        return cls(
            engine,
            config,
            settings.mn_url,
            ClientProbe(connection),
            metrics,
            interval=settings.watch_interval,
            webhook=webhook,
            confirm=confirming(connection, engine),
        )

    async def after_pull(self, as_of_us: int) -> list[Notice]:
        """Everything the watch does after a pull whose history is complete up to
        `as_of_us`; the alert changes it made. A failing step is logged and the rest run."""
        now_us = time.time_ns() // 1000
        notices: list[Notice] = []
        low_us = as_of_us - self.config.window_us
        lost = await self._step("the restore check", self._vanished(low_us, as_of_us))
        if lost:
            notices += (
                await self._step(
                    "recording a restore",
                    record_vanished_records(self.engine, self.url, lost, low_us, now_us),
                )
                or []
            )
        if self._due():
            started = time.monotonic()
            found = await self._step(
                "the watch's reconciliation",
                reconcile_settled(self.engine, self.config, now_us, self.confirm),
            )
            if found is not None:
                # A failed run is tried again at the next pull, not an interval later.
                self._last_run = started
                notices += found[1]
            pruned = await self._step(
                "pruning superseded watch runs",
                prune_superseded(self.engine, now_us - self.config.window_us),
            )
            if pruned:
                log.info(
                    "watch: deleted %d earlier watch run(s) that later runs superseded", pruned
                )
        notices += (
            await self._step("clearing resolved alerts", clear_resolved(self.engine, now_us)) or []
        )
        await self._step("setting the gauges", self._publish())
        for notice in notices:
            _log(notice)
            if self.webhook is not None:
                content = body(notice.event, notice.alert, notice.added)
                if not await self.webhook.deliver(content):
                    self.metrics.webhook_failures.inc()
        return notices

    async def _vanished(self, low_us: int, high_us: int) -> dict[str, int]:
        # The MN's retention purge deletes its oldest records: those are not a restore's.
        oldest = await self.probe.oldest_end_us()
        if oldest is not None:
            low_us = max(low_us, oldest)
        return await vanished(self.engine, self.probe, self.url, low_us, high_us)

    async def _publish(self) -> None:
        async with self.engine.connect() as conn:
            await publish(conn, self.metrics)

    def _due(self) -> bool:
        return self._last_run is None or time.monotonic() - self._last_run >= self.interval

    async def _step(self, what: str, work: Awaitable[T]) -> T | None:
        try:
            return await work
        except Exception:
            log.exception("watch: %s failed; the next pull tries again", what)
            return None


def confirming(connection: MNConnection, engine: AsyncEngine) -> Confirm:
    """The watch's confirming pull: the windows read again from the MN it pulls from."""

    async def confirm(windows: list[tuple[int, int]]) -> object:
        return await confirm_once(connection, engine, windows)

    return confirm


def _log(notice: Notice) -> None:
    alert = notice.alert
    span = f"{alert['from']} to {alert['until']}"
    ack = f"POST /api/v1/alerts/{alert['id']}/ack"
    if notice.event == "cleared":
        log.warning(
            "watch: alert %d (%s) cleared by %s", alert["id"], alert["kind"], alert["cleared_by"]
        )
        return
    if alert["kind"] == Kind.RESTORE:
        what = (
            f"the MN no longer returns {alert['count']} record(s) it held at an earlier pull "
            f"(calls ending {span}), first seen {alert['first_seen']}: restored from a backup?"
        )
        advice = (
            f"confirm the restore (POST /api/v1/alerts/{alert['id']}/confirm: their calls then "
            f"count as lost) or acknowledge it ({ack})"
        )
    else:
        nodes = ", ".join(alert["nodes"]) or "no node named"
        what = (
            f"{alert['count']} record(s) syslog saw are missing on the MN (calls ending "
            f"{span}; {nodes})"
        )
        advice = (
            f"export them (a batch of run {alert['run_id']}'s missing_in_mn) or acknowledge "
            f"the alert ({ack})"
        )
    grown = f" by {notice.added}" if notice.event == "grown" else ""
    log.warning("watch: alert %d %s%s: %s; %s", alert["id"], notice.event, grown, what, advice)
