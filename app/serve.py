"""Runs the whole service process in one event loop: writer, syslog listeners, HTTP.

Stop order on SIGTERM/SIGINT matters for zero loss: stop accepting syslog, read the open
connections until they close (or the drain timeout), commit everything queued, then stop
HTTP. The caller migrated the schema, created the engine and disposes of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.app import create_app
from app.config import ListenAddress, Settings, cannot_listen, read_secret_file
from app.db import counts
from app.db.engine import create_engine
from app.db.location import DatabaseFile
from app.db.partitions import partitioned
from app.metrics import Metrics
from app.receiver.listeners import Receivers
from app.reconcile.service import fail_interrupted
from app.runtime import Runtime, settle_garbage_collector

log = logging.getLogger(__name__)


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: this module decides when to stop."""

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29
        yield


async def serve(settings: Settings, engine: AsyncEngine) -> None:
    """Run until SIGTERM or SIGINT, then stop without losing what was read."""
    runtime = Runtime.build(settings, engine)
    webhook_secret = _webhook_secret(settings)
    mn_password = _mn_password(settings)
    # Bound here, not by uvicorn, so that a taken port is a clear start-up error.
    http_socket = _bind_http(settings.http_address)
    await _fold_counts(engine)
    await _fail_interrupted_runs(engine)
    partition_task = await _start_partitions(settings, engine)
    runtime.writer.start()
    receivers = Receivers(settings, runtime.writer, runtime.metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    database_file = DatabaseFile.of(settings.database_url)
    # Requests have an engine of their own that waits briefly: they never hold up the writer
    # for long, nor wait long behind it.
    request_engine = create_engine(
        settings.database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        request_wait=settings.request_database_wait,
    )
    http = _HttpServer(
        uvicorn.Config(
            create_app(
                dataclasses.replace(
                    runtime.service_state(request_engine),
                    database_file=_nothing if database_file is None else database_file.problem,
                )
            ),
            host=settings.http_address.host,
            port=settings.http_address.port,
            log_level=settings.log_level.lower(),
            access_log=False,
            lifespan="off",
            # The client address the audit log records: X-Forwarded-For is believed only
            # from the proxies named in the settings (uvicorn would believe any local one).
            proxy_headers=bool(settings.trusted_proxy_networks),
            forwarded_allow_ips=[str(n) for n in settings.trusted_proxy_networks],
        )
    )
    settle_garbage_collector()
    try:
        await receivers.start()
        http_task = asyncio.create_task(http.serve([http_socket]), name="cdrecon-http")
        # uvicorn signals readiness only through a flag.
        while not http.started and not http_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if http_task.done():
            await http_task  # re-raise a bind failure
            raise RuntimeError("the HTTP server stopped during start-up")
        log.info("cdrecon serving; HTTP on %s", settings.http_address)
        puller = _start_history_pulls(
            settings, engine, runtime.metrics, mn_password, webhook_secret
        )
        pruner = _start_pruning(settings, engine, runtime)
        file_watch = None
        if database_file is not None:
            file_watch = asyncio.create_task(database_file.watch(), name="cdrecon-database-file")
        await stop.wait()
        if puller is not None:
            puller.cancel()
        if pruner is not None:
            pruner.cancel()
        if partition_task is not None:
            partition_task.cancel()
        if file_watch is not None:
            file_watch.cancel()
        log.info("stopping: draining syslog connections")
        await receivers.stop(settings.drain_timeout)
        # Deferred deriving may be long; it is listed in the database and the next start
        # resumes it, so stopping waits only for the raw messages.
        await runtime.writer.stop(finish_deriving=False)
        log.info("all received messages committed")
        http.should_exit = True
        await http_task
    finally:
        await runtime.writer.stop(finish_deriving=False)
        http_socket.close()
        await request_engine.dispose()


async def _fold_counts(engine: AsyncEngine) -> None:
    """Gather the row counts earlier server processes left (PostgreSQL); storing must not
    wait on it, so a failure is only logged."""
    try:
        async with engine.begin() as conn:
            await counts.fold(conn)
    except Exception:
        log.exception("folding the row counts failed; they stay correct, in more rows")


async def _fail_interrupted_runs(engine: AsyncEngine) -> None:
    """Mark failed the reconciliation runs an earlier process left running (killed during a
    run), so that none says `running` for ever; a failure is only logged (the next run
    tries again)."""
    try:
        await fail_interrupted(engine)
    except Exception:
        log.exception("marking interrupted reconciliation runs failed did not work")


def _nothing() -> None:
    return None


def _bind_http(address: ListenAddress) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        return socket.create_server((address.host, address.port), family=family, backlog=2048)
    except OSError as exc:
        raise cannot_listen("HTTP", "CDRECON_HTTP", address, exc) from exc


def _start_history_pulls(
    settings: Settings,
    engine: AsyncEngine,
    metrics: Metrics,
    password: str,
    webhook_secret: bytes | None,
) -> asyncio.Task[None] | None:
    """The scheduled MN history pull, when an MN is configured, and the watch after it."""
    if not settings.mn_url:
        return None
    from app.history.coverage import AsOf
    from app.history.pulling import pull_forever

    watcher = None
    if settings.watch:
        from app.watch.watcher import Watcher

        watcher = Watcher.from_settings(settings, engine, metrics, password, webhook_secret)
    metrics.history_pulls_scheduled()

    async def after_pull(as_of: AsOf) -> None:
        metrics.history_pulled()
        if watcher is not None:
            await watcher.after_pull(as_of.us)

    return asyncio.create_task(
        pull_forever(
            engine,
            settings.mn_url,
            settings.mn_user,
            password,
            settings.mn_ca_bundle,
            settings.mn_pull_interval,
            after_pull,
        ),
        name="cdrecon-history-pull",
    )


# How often serve makes the message partitions ahead, at most (PostgreSQL).
PARTITIONS_INTERVAL = 3600.0


async def _start_partitions(settings: Settings, engine: AsyncEngine) -> asyncio.Task[None] | None:
    """PostgreSQL: the message partitions of today and the next days, made before the
    receivers start and then on retention's schedule (hourly at most), pruning or not."""
    from app.retention.service import make_partitions, partitions_forever

    if not partitioned(engine):
        return None
    try:
        await make_partitions(engine)
    except Exception:  # messages go to the default partition meanwhile; the task retries
        log.exception("making message partitions failed")
    interval = min(settings.prune_interval or PARTITIONS_INTERVAL, PARTITIONS_INTERVAL)
    return asyncio.create_task(
        partitions_forever(engine, interval), name="cdrecon-message-partitions"
    )


def _start_pruning(
    settings: Settings, engine: AsyncEngine, runtime: Runtime
) -> asyncio.Task[None] | None:
    """Retention's passes, unless CDRECON_PRUNE_INTERVAL is 0."""
    if not settings.prune_interval:
        return None
    from app.retention.service import policy_of, prune_forever

    def counted(table: str, rows: int) -> None:
        runtime.metrics.pruned.labels(table).inc(rows)

    return asyncio.create_task(
        prune_forever(
            engine,
            policy_of(settings),
            settings.prune_interval,
            counted,
            busy=lambda: runtime.writer.pending > 0,
        ),
        name="cdrecon-retention",
    )


def _webhook_secret(settings: Settings) -> bytes | None:
    """The watch's webhook secret, read before anything starts: a wrong path is a start-up
    error, not a webhook that signs nothing."""
    path = settings.watch_webhook_secret_file
    if path is None or not settings.watch:
        return None
    secret = read_secret_file(path, "CDRECON_WATCH_WEBHOOK_SECRET_FILE", "webhook secret")
    return secret.encode()


def _mn_password(settings: Settings) -> str:
    """The MN API password, read before anything starts: a wrong path is a start-up error,
    not a pull that fails every interval."""
    path = settings.mn_password_file
    if path is None or not settings.mn_url:
        return ""
    return read_secret_file(path, "CDRECON_MN_PASSWORD_FILE", "MN password")
