"""The `cdrecon` command line. Each command is a few lines calling the service code."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click
from pydantic import ValidationError

from app.config import Settings
from app.db.migrate import upgrade

_DATABASE_OPTION = click.option(
    "--database-url", help="SQLAlchemy URL [env CDRECON_DATABASE_URL; default ./cdrecon.db]"
)


def _settings(**flags: Any) -> Settings:
    """Settings from the environment, with the flags given on the command line on top."""
    try:
        return Settings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from exc


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """cdrecon: rebuild Pexip CDRs lost by a Management Node restore, from syslog."""


@main.command()
@_DATABASE_OPTION
@click.option("--syslog-tcp", help="HOST:PORT or off [env CDRECON_SYSLOG_TCP; 0.0.0.0:5514]")
@click.option("--syslog-udp", help="HOST:PORT or off [env CDRECON_SYSLOG_UDP; 0.0.0.0:5514]")
@click.option("--syslog-tls", help="HOST:PORT or off [env CDRECON_SYSLOG_TLS; 0.0.0.0:6514]")
@click.option("--tls-cert", help="PEM certificate (chain) for TLS [env CDRECON_TLS_CERT]")
@click.option("--tls-key", help="PEM private key [env CDRECON_TLS_KEY]")
@click.option("--tls-client-ca", help="require client certificates signed by this CA")
@click.option("--tls-allowed-peers", help="comma-separated certificate names allowed to send")
@click.option("--http", help="HTTP HOST:PORT [env CDRECON_HTTP; 127.0.0.1:8080]")
@click.option("--log-level", help="DEBUG, INFO, WARNING [env CDRECON_LOG_LEVEL]")
def serve(**flags: Any) -> None:
    """Receive syslog and serve the API until SIGTERM/SIGINT (applies migrations first)."""
    from app.server import serve as run_service

    settings = _settings(**flags)
    _logging(settings.log_level)
    # The standard loop, not uvloop: uvloop's server-side start_tls never completes the
    # handshake, and the receiver needs it to log and count refused TLS peers.
    asyncio.run(run_service(settings))


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@_DATABASE_OPTION
def db_upgrade(**flags: Any) -> None:
    """Apply the Alembic migrations up to the newest."""
    settings = _settings(**flags)
    _logging(settings.log_level)
    upgrade(settings.database_url)
    click.echo("database is at the newest schema")


@main.command("import-syslog")
@_DATABASE_OPTION
@click.argument("files", nargs=-1, required=True)
def import_syslog(files: tuple[str, ...], **flags: Any) -> None:
    """Backfill syslog FILES (plain or gzip; - for stdin) through the normal ingest path.

    Lines as rsyslog or syslog-ng write them, or a Pexip log download. Importing the same
    file twice adds nothing.
    """
    from app.ingest.backfill import ImportSummary, import_files
    from app.runtime import Runtime

    settings = _settings(**flags)
    _logging("WARNING" if settings.log_level.upper() == "INFO" else settings.log_level)
    upgrade(settings.database_url)

    async def run() -> ImportSummary:
        runtime = Runtime.build(settings)
        runtime.writer.start()
        try:
            with _progress() as advance:
                lines = await import_files(
                    runtime.writer, list(files), settings.max_frame_size, advance
                )
        finally:
            await runtime.writer.stop()
            await runtime.engine.dispose()
        figure = runtime.metrics.registry.get_sample_value
        file_label = {"transport": "file"}
        return ImportSummary(
            files=len(files),
            lines=lines,
            stored=int(figure("cdrecon_messages_stored_total", file_label) or 0),
            duplicates=int(figure("cdrecon_messages_duplicate_total", file_label) or 0),
            parse_failures=int(figure("cdrecon_parse_failures_total", file_label) or 0),
            events=int(figure("cdrecon_events_total") or 0),
        )

    try:
        summary = asyncio.run(run())
    except OSError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"files {summary.files}, lines {summary.lines}, stored {summary.stored}, "
        f"duplicates {summary.duplicates}, parse failures {summary.parse_failures}, "
        f"new call events {summary.events}"
    )


@contextlib.contextmanager
def _progress() -> Iterator[Callable[[str, int], None] | None]:
    """A rich progress line on a terminal; nothing when output goes to a file or pipe."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} lines"),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("importing", total=None)

        def advance(path: str, lines: int) -> None:
            bar.update(task, advance=lines, description=f"importing {path}")

        yield advance


@main.command()
@_DATABASE_OPTION
def rebuild(**flags: Any) -> None:
    """Recreate all call events and CDRs from the raw message store."""
    from app.cdr.service import rebuild as rebuild_all
    from app.db.engine import create_engine

    settings = _settings(**flags)
    _logging("WARNING" if settings.log_level.upper() == "INFO" else settings.log_level)
    upgrade(settings.database_url)

    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            derived = await rebuild_all(engine)
        finally:
            await engine.dispose()
        click.echo(
            f"events {derived.events}, duplicate lines {derived.duplicates}, "
            f"unparsed Pexip lines {derived.unparsed}, CDRs {derived.legs}"
        )

    asyncio.run(run())


if __name__ == "__main__":
    main()
