"""Prometheus metrics of one running service, in a registry of its own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

TRANSPORTS = ("tcp", "tls", "udp", "file")


class Metrics:
    """Every figure the service exports at /metrics. Names are a public interface: keep them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "cdrecon_messages_received",
            "Syslog messages read from a socket or file, before storage.",
            ["transport"],
            registry=r,
        )
        self.stored = Counter(
            "cdrecon_messages_stored",
            "Syslog messages committed to the raw store.",
            ["transport"],
            registry=r,
        )
        self.parse_failures = Counter(
            "cdrecon_parse_failures",
            "Stored messages that fit no syslog format (kept raw with the reason).",
            ["transport"],
            registry=r,
        )
        self.oversize = Counter(
            "cdrecon_messages_oversize",
            "Messages longer than the maximum frame size, stored truncated and flagged.",
            ["transport"],
            registry=r,
        )
        self.framing_errors = Counter(
            "cdrecon_framing_errors",
            "Frames with a framing problem (bad octet count, incomplete at close), stored raw.",
            ["transport"],
            registry=r,
        )
        self.dropped = Counter(
            "cdrecon_messages_dropped",
            "Messages that could not be stored (UDP past the queue limit, database failure).",
            ["transport", "reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "cdrecon_messages_duplicate",
            "Backfilled lines skipped because the same line was imported before.",
            ["transport"],
            registry=r,
        )
        self.events = Counter(
            "cdrecon_events",
            "New Pexip call events extracted from stored messages.",
            registry=r,
        )
        self.event_duplicates = Counter(
            "cdrecon_events_duplicate",
            "Messages carrying a call event that was already stored (resent or backfilled).",
            registry=r,
        )
        self.pexip_failures = Counter(
            "cdrecon_pexip_parse_failures",
            "Messages that look like Pexip lines that may carry a call event (a participant "
            "id or a lifecycle Name) but whose body does not parse (kept raw).",
            registry=r,
        )
        self.derive_errors = Counter(
            "cdrecon_derive_errors",
            "Messages whose call event or CDR the database refused, skipped while the rest of "
            "their batch was derived (raw messages stored; run rebuild after the fix).",
            registry=r,
        )
        self.connections = Counter(
            "cdrecon_connections",
            "Connections accepted.",
            ["transport"],
            registry=r,
        )
        self.connections_open = Gauge(
            "cdrecon_connections_open",
            "Connections open now.",
            ["transport"],
            registry=r,
        )
        self.connections_rejected = Counter(
            "cdrecon_connections_rejected",
            "Connections refused: over a limit, TLS handshake failed, peer not allowed.",
            ["transport", "reason"],
            registry=r,
        )
        self.tls_handshakes = Gauge(
            "cdrecon_tls_handshakes_in_progress",
            "TLS connections accepted whose handshake has not ended yet.",
            registry=r,
        )
        self.incomplete_at_close = Counter(
            "cdrecon_connections_partial_frame",
            "Connections that closed in the middle of a frame (the part is stored, flagged).",
            ["transport"],
            registry=r,
        )
        self.queue = Gauge(
            "cdrecon_ingest_queue_messages",
            "Messages read and waiting for the database.",
            registry=r,
        )
        self.queue_bytes = Gauge(
            "cdrecon_ingest_queue_bytes",
            "Bytes of the messages read and waiting for the database (their frames).",
            registry=r,
        )
        self.derive_pending = Gauge(
            "cdrecon_derive_pending_messages",
            "Messages stored whose call events and CDRs are still to be derived: deriving "
            "was deferred while the database was behind; the writer catches up when it can.",
            registry=r,
        )
        self.paused = Gauge(
            "cdrecon_ingest_paused_connections",
            "Connections (and the UDP socket) not being read because the database is behind "
            "or their sender holds more than its share of the queue (back-pressure).",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "cdrecon_batch_seconds",
            "Time to parse and commit one batch of messages.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.batch_size = Histogram(
            "cdrecon_batch_messages",
            "Messages per committed batch.",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 50000),
            registry=r,
        )
        self.since_commit = Gauge(
            "cdrecon_seconds_since_commit",
            "Seconds since the batch writer last committed (rises while idle too; with a "
            "queue above zero it means the database is not taking writes).",
            registry=r,
        )
        self.quarantined = Counter(
            "cdrecon_messages_quarantined",
            "Messages the database refused even raw, written to the quarantine file instead.",
            ["transport"],
            registry=r,
        )
        self.write_errors = Counter(
            "cdrecon_batch_errors",
            "Batches whose commit failed and was retried.",
            registry=r,
        )
        self.source_refused = Counter(
            "cdrecon_syslog_source_refused",
            "TCP connections and UDP datagrams refused: source outside CDRECON_SYSLOG_ALLOW.",
            ["transport"],
            registry=r,
        )
        self.udp_receive_buffer = Gauge(
            "cdrecon_udp_receive_buffer_bytes",
            "The UDP socket's receive buffer as the kernel granted it.",
            registry=r,
        )
        self.rows = Gauge(
            "cdrecon_rows",
            "Rows in the big tables (messages, events, cdrs, mn_participants), from the "
            "maintained counts read at each scrape, not a scan.",
            ["table"],
            registry=r,
        )
        self.pruned = Counter(
            "cdrecon_rows_pruned",
            "Rows deleted by retention (CDRECON_RETAIN_*_DAYS), by table.",
            ["table"],
            registry=r,
        )
        self.database_bytes = Gauge(
            "cdrecon_database_bytes",
            "Bytes the database takes: the SQLite file with its log, or PostgreSQL's "
            "pg_database_size; measured at each scrape.",
            registry=r,
        )
        self.disk_free_bytes = Gauge(
            "cdrecon_disk_free_bytes",
            "Bytes free to cdrecon on the SQLite database's file system (-1 on PostgreSQL, "
            "whose disk is the server's); measured at each scrape.",
            registry=r,
        )
        self.disk_budget_exceeded = Gauge(
            "cdrecon_disk_budget_exceeded",
            "1 when free space is under CDRECON_DISK_MIN_FREE_BYTES or the database is over "
            "CDRECON_DATABASE_MAX_BYTES (a warning: nothing stops), else 0.",
            registry=r,
        )
        self._watch_metrics()
        for transport in ("tcp", "udp"):
            self.source_refused.labels(transport)
        for transport in TRANSPORTS:
            # Pre-create the series so dashboards see zeros rather than absent series.
            for family in (self.received, self.stored, self.parse_failures, self.oversize):
                family.labels(transport)

    def _watch_metrics(self) -> None:
        r = self.registry
        # NaN without scheduled pulls; from the start until the first succeeds, so that a
        # pull that never succeeds shows as an age that grows.
        self._last_pull: float | None = None
        self.history_pull_age = Gauge(
            "cdrecon_history_pull_age_seconds",
            "Seconds since the last successful scheduled MN history pull (since the start "
            "before one succeeds; NaN when no pulls are scheduled).",
            registry=r,
        )
        self.history_pull_age.set_function(
            lambda: float("nan") if self._last_pull is None else time.time() - self._last_pull
        )
        self.missing_in_mn = Gauge(
            "cdrecon_missing_in_mn",
            "Records syslog saw that the MN lacks, in open gap alerts (not yet exported or "
            "acknowledged).",
            registry=r,
        )
        self.gap_open = Gauge(
            "cdrecon_gap_open",
            "Open gap alerts: restore gaps a watch run found, not yet exported or acknowledged.",
            registry=r,
        )
        self.restore_open = Gauge(
            "cdrecon_mn_restore_open",
            "Open restore alerts: the MN no longer returns records it held at an earlier pull.",
            registry=r,
        )
        self.restore_records = Gauge(
            "cdrecon_mn_records_vanished",
            "MN records held at an earlier pull and no longer returned, in open restore alerts.",
            registry=r,
        )
        self.restore_first_seen = Gauge(
            "cdrecon_mn_restore_first_seen_timestamp_seconds",
            "When the oldest open restore alert was first seen (Unix time; 0 when none).",
            registry=r,
        )
        self.webhook_failures = Counter(
            "cdrecon_alert_webhook_failures",
            "Alert changes the webhook could not deliver after its retries.",
            registry=r,
        )

    def history_pulls_scheduled(self) -> None:
        """Pulls are scheduled: their age counts from now until one succeeds."""
        if self._last_pull is None:
            self._last_pull = time.time()

    def history_pulled(self) -> None:
        """A scheduled pull just succeeded: its age restarts from zero."""
        self._last_pull = time.time()

    def count_udp_kernel_drops(self, read: Callable[[], int | None]) -> None:
        """Export the datagrams the kernel dropped on our UDP socket (its buffer was full),
        calling `read` when /metrics is scraped; None means unknown and exports nothing."""
        self.registry.register(_KernelDrops(read))


class _KernelDrops(Collector):
    """cdrecon_udp_kernel_drops_total, read from the kernel at each scrape."""

    def __init__(self, read: Callable[[], int | None]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        drops = self._read()
        if drops is not None:
            yield CounterMetricFamily(
                "cdrecon_udp_kernel_drops",
                "UDP datagrams the kernel dropped before cdrecon read them (receive buffer "
                "full): raise CDRECON_UDP_RECEIVE_BUFFER and net.core.rmem_max.",
                value=drops,
            )


def show_disk(
    metrics: Metrics, database_bytes: int, free_bytes: int | None, exceeded: bool
) -> None:
    """Set the disk budget's gauges from one measurement."""
    metrics.database_bytes.set(database_bytes)
    metrics.disk_free_bytes.set(-1 if free_bytes is None else free_bytes)
    metrics.disk_budget_exceeded.set(1 if exceeded else 0)
