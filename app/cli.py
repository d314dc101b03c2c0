"""The `cdrecon` command line. Each command is a few lines calling the service code."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.config import Settings, StartupError, read_secret_file
from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.errors import CdreconError

T = TypeVar("T")

_FLAG_HELP = {
    "database_url": "SQLAlchemy URL [env CDRECON_DATABASE_URL; default ./cdrecon.db]",
    "syslog_tcp": "HOST:PORT or off [env CDRECON_SYSLOG_TCP; 0.0.0.0:5514]",
    "syslog_udp": "HOST:PORT or off [env CDRECON_SYSLOG_UDP; 0.0.0.0:5514]",
    "syslog_tls": "HOST:PORT or off [env CDRECON_SYSLOG_TLS; 0.0.0.0:6514 with a certificate]",
    "tls_cert": "PEM certificate (chain) for TLS [env CDRECON_TLS_CERT]",
    "tls_key": "PEM private key [env CDRECON_TLS_KEY]",
    "tls_client_ca": "require client certificates signed by this CA [env CDRECON_TLS_CLIENT_CA]",
    "tls_allowed_peers": "comma-separated certificate names allowed to send",
    "http": "HTTP HOST:PORT [env CDRECON_HTTP; 127.0.0.1:8080]",
    "log_level": "DEBUG, INFO, WARNING, ERROR [env CDRECON_LOG_LEVEL; INFO]",
}
_DATABASE_OPTION = click.option("--database-url", help=_FLAG_HELP["database_url"])


def _settings(**flags: Any) -> Settings:
    """Settings from the environment, with the flags given on the command line on top; a
    bad value is one line per setting that names it."""
    try:
        return Settings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            reason = str(error["msg"]).removeprefix("Value error, ")
            if error["loc"]:
                name = str(error["loc"][0])
                flag = "--" + name.replace("_", "-")
                reason = f"CDRECON_{name.upper()} ({flag}): {reason}"
            lines.append(reason)
        raise StartupError("\n".join(lines)) from exc


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run(
    flags: dict[str, Any],
    work: Callable[[Settings, AsyncEngine], Awaitable[T]],
    *,
    quiet: bool = True,
) -> T:
    """The frame of every command: settings, logging, migration, the process's one engine,
    `work`, and the engine disposed of. A `quiet` command logs only warnings unless another
    level than the default was asked for."""
    settings = _settings(**flags)
    level = settings.log_level
    _logging("WARNING" if quiet and level.upper() == "INFO" else level)
    upgrade(settings.database_url)

    async def run() -> T:
        engine = create_engine(
            settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        try:
            return await work(settings, engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except CdreconError as exc:
        raise click.ClickException(str(exc)) from exc


def _actor() -> str:
    """Who acts, in the audit log: `cli:<os user>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no name for this uid (a bare container)
        return f"cli:uid {os.getuid()}"


async def _audit(
    engine: AsyncEngine, action: str, target: str | None, parameters: dict[str, Any]
) -> None:
    """Audit an action that committed its work in transactions of its own."""
    from app.audit.service import record

    async with engine.begin() as conn:
        await record(conn, _actor(), action, target, parameters)


class _Commands(click.Group):
    """Ends a command that fails on a mistake with a line or two on stderr and a documented
    exit status (README, "Exit status"); the traceback only with --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except StartupError as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"cdrecon: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"cdrecon: {type(exc).__name__}: {exc}", err=True)
            click.echo("cdrecon: unexpected; run with --debug for the traceback", err=True)
            ctx.exit(1)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="show the traceback of a failure")
def main(debug: bool) -> None:
    """cdrecon: rebuild Pexip CDRs lost by a Management Node restore, from syslog."""


def _every_setting(command: Callable[..., None]) -> Callable[..., None]:
    """A `--<name>` flag for each setting (pydantic parses the text as the environment's)."""
    for name in reversed(list(Settings.model_fields)):
        default = Settings.model_fields[name].default
        shown = "" if default in (None, "") else f"; {default}"
        help_text = _FLAG_HELP.get(name, f"[env CDRECON_{name.upper()}{shown}]")
        command = click.option(f"--{name.replace('_', '-')}", name, help=help_text)(command)
    return command


@main.command()
@_every_setting
def serve(**flags: Any) -> None:
    """Receive syslog and serve the API until SIGTERM/SIGINT (applies migrations first)."""
    from app.serve import serve as run_service

    # The standard loop, not uvloop: uvloop's server-side start_tls never completes the
    # handshake, and the receiver needs it to log and count refused TLS peers.
    _run(flags, run_service, quiet=False)


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


@db.command("recount")
@_DATABASE_OPTION
def db_recount(**flags: Any) -> None:
    """Count the rows of the big tables again (COUNT(*)) and store the counts /stats reads."""
    from app.db import counts

    async def run(_settings: Settings, engine: AsyncEngine) -> dict[str, tuple[int, int]]:
        async with engine.begin() as conn:
            before = await counts.recount(conn)
            after = await counts.read(conn)
        changed = {table: (before[table], after[table]) for table in before}
        await _audit(engine, "db.recount", None, {t: n for t, (_, n) in changed.items()})
        return changed

    for table, (was, now) in _run(flags, run).items():
        click.echo(f"{table} {now}" + ("" if was == now else f" (was {was})"))


@db.command("backup")
@_DATABASE_OPTION
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def db_backup(file: Path, **flags: Any) -> None:
    """Copy the SQLite database to FILE (a new file), consistent while `serve` runs.

    PostgreSQL: refused, with the pg_dump command that does the same there.
    """
    from app.db.backup import backup, pg_dump_guidance
    from app.db.engine import is_sqlite

    settings = _settings(**flags)
    if not is_sqlite(settings.database_url):
        raise click.ClickException(pg_dump_guidance(settings.database_url))

    async def run(_settings: Settings, engine: AsyncEngine) -> None:
        done = await backup(engine, file)
        await _audit(engine, "db.backup", str(file), {"bytes": done.bytes})
        click.echo(
            f"{file}: {done.bytes} bytes in {done.seconds:.1f} s; check it: cdrecon db verify"
        )

    _run(flags, run)


@db.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def db_verify(file: Path) -> None:
    """Check a backup FILE: SQLite's integrity check, its schema revision, its rows per table.

    Exit status 1 when anything is wrong; the file is never changed.
    """
    from app.db.backup import verify

    found = verify(file)
    click.echo(f"schema revision {found.revision or '-'} (newest {found.newest_revision})")
    for table, count in found.counts.items():
        click.echo(f"{table}\t{count}")
    for table, (kept, rows) in found.counts_off.items():
        click.echo(
            f"{file}: note: the maintained count of {table} is {kept}, the table holds {rows}; "
            "run cdrecon db recount after restoring it",
            err=True,
        )
    if not found.sound:
        for problem in found.problems:
            click.echo(f"{file}: {problem}", err=True)
        raise SystemExit(1)
    click.echo(f"{file}: sound")


@main.command("prune")
@_DATABASE_OPTION
@click.option("--dry-run", is_flag=True, help="count what would go; change nothing")
def prune_command(dry_run: bool, **flags: Any) -> None:
    """Delete what the retention settings let go (CDRECON_RETAIN_*_DAYS), as `serve` does
    every CDRECON_PRUNE_INTERVAL; never the evidence of unexported lost records."""
    from app.retention.service import Pass, policy_of, prune, summary

    async def run(settings: Settings, engine: AsyncEngine) -> Pass:
        # Resting between transactions as serve does: a serve beside it keeps the writer.
        done = await prune(engine, policy_of(settings), dry_run=dry_run, rest=not dry_run)
        if not dry_run:
            await _audit(engine, "retention.prune", None, summary(done))
        return done

    done = _run(flags, run)
    verb = "would delete" if dry_run else "deleted"
    for table, count in sorted(done.tally.rows.items()):
        click.echo(f"{table}\t{count}")
    for name, count in sorted(done.tally.partitions.items()):
        click.echo(f"partition {name}\t{count}")
    if done.default_rows:
        click.echo(
            f"{done.default_rows} messages are in the default partition (never dropped): "
            "serve makes the day partitions ahead",
            err=True,
        )
    click.echo(f"{verb} {done.tally.total} rows in {done.seconds:.1f} s", err=True)
    if not dry_run and not done.can_return_space:
        click.echo(
            "the SQLite file was created without auto_vacuum=INCREMENTAL: freed pages are "
            "reused but the file does not shrink (VACUUM, with serve stopped, shrinks it)",
            err=True,
        )


@main.command("import-syslog")
@_DATABASE_OPTION
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, allow_dash=True)
)
def import_syslog(files: tuple[str, ...], **flags: Any) -> None:
    """Backfill syslog FILES (plain or gzip; - for stdin) through the normal ingest path.

    Lines as rsyslog or syslog-ng write them, or a Pexip log download. Importing the same
    file twice adds nothing. Call events and CDRs are derived in a second process
    (CDRECON_DERIVE_PROCESS=false: in this one); the summary comes once they are complete.
    """
    from app.ingest.backfill import ImportSummary, import_files, until_derived
    from app.runtime import Runtime, settle_garbage_collector

    async def run(settings: Settings, engine: AsyncEngine) -> ImportSummary:
        runtime = Runtime.build(settings, engine, importing=True)
        settle_garbage_collector()
        runtime.writer.start()
        try:
            with _progress() as shown:
                lines = await import_files(
                    runtime.writer,
                    list(files),
                    settings.max_frame_size,
                    None if shown is None else lambda path, n: shown(f"importing {path}", n),
                )
                if shown is not None:
                    shown("deriving call events and CDRs", 0)
                await runtime.writer.drained()
                await until_derived(engine)
        finally:
            # Interrupted, the deriving process's list stays for the next import or `serve`.
            await runtime.writer.stop(finish_deriving=not settings.derive_process)
        figure = runtime.metrics.registry.get_sample_value
        file_label = {"transport": "file"}
        summary = ImportSummary(
            files=len(files),
            lines=lines,
            stored=int(figure("cdrecon_messages_stored_total", file_label) or 0),
            duplicates=int(figure("cdrecon_messages_duplicate_total", file_label) or 0),
            parse_failures=int(figure("cdrecon_parse_failures_total", file_label) or 0),
            events=int(figure("cdrecon_events_total") or 0),
        )
        await _audit(engine, "syslog.import", None, {"files": list(files), **asdict(summary)})
        return summary

    try:
        summary = _run(flags, run)
    except OSError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"files {summary.files}, lines {summary.lines}, stored {summary.stored}, "
        f"duplicates {summary.duplicates}, parse failures {summary.parse_failures}, "
        f"new call events {summary.events}"
    )


@contextlib.contextmanager
def _progress() -> Iterator[Callable[[str, int], None] | None]:
    """A rich progress line on a terminal, `shown(what, lines)` moving it on; nothing when
    output goes to a file or pipe."""
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

        def advance(what: str, lines: int) -> None:
            bar.update(task, advance=lines, description=what)

        yield advance


@main.command()
@_DATABASE_OPTION
def rebuild(**flags: Any) -> None:
    """Recreate all call events and CDRs from the raw message store."""
    from app.cdr.deriving import rebuild as rebuild_all

    async def run(_settings: Settings, engine: AsyncEngine) -> None:
        derived = await rebuild_all(engine)
        await _audit(engine, "cdr.rebuild", None, {"events": derived.events, "cdrs": derived.legs})
        click.echo(
            f"events {derived.events}, duplicate lines {derived.duplicates}, "
            f"unparsed Pexip lines {derived.unparsed}, CDRs {derived.legs}"
            + (f", skipped lines {derived.failed} (refused, see the log)" if derived.failed else "")
        )

    _run(flags, run)


def _when(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC (every Pexip clock is UTC)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 time: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@main.command("import-history")
@_DATABASE_OPTION
@click.option(
    "--as-of",
    help="when the export was made (ISO 8601, UTC), if known; else its newest end_time, "
    "capped by the file's modification time",
)
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, allow_dash=True)
)
def import_history(files: tuple[str, ...], as_of: str | None, **flags: Any) -> None:
    """Import MN history exports (API JSON, JSON lines or CSV); each file all or nothing.

    Prints, for each file, when the history is complete up to ("as of") and how that was
    decided: calls that ended after it are not counted lost.
    """
    from app.audit.service import record
    from app.history.coverage import Kind, import_export
    from app.history.service import HistoryImportError
    from app.ingest.backfill import source_name
    from app.times import iso

    as_of_us = round(_when(as_of).timestamp() * 1_000_000) if as_of else None

    async def run(_settings: Settings, engine: AsyncEngine) -> int:
        failures = 0
        for path in files:
            source = source_name(path)
            try:
                with click.open_file(path, "rb") as handle:
                    # The file's own modification time caps its "as of"; stdin has none.
                    stat = None if path == "-" else os.fstat(handle.fileno())
                    mtime_us = None if stat is None else stat.st_mtime_ns // 1000
                    # Read as it is imported: memory follows a batch of records, not the file.
                    document = iter(lambda: handle.read(1024 * 1024), b"")
                    async with engine.begin() as conn:
                        stored, complete = await import_export(
                            conn,
                            document,
                            source,
                            Kind.FILE,
                            as_of_us=as_of_us,
                            mtime_us=mtime_us,
                        )
                        counts = {
                            "participants": stored.participants,
                            "conferences": stored.conferences,
                            "as_of": iso(None if complete is None else complete.us),
                        }
                        await record(conn, _actor(), "history.import", stored.source, counts)
            except HistoryImportError as exc:
                failures += 1
                click.echo(str(exc), err=True)
                for error in exc.errors[:50]:
                    where = f"record {error.row}" + (
                        f" ({error.record_id})" if error.record_id else ""
                    )
                    field = f" field {error.field}" if error.field else ""
                    click.echo(f"  {where}{field}: {error.reason}", err=True)
                continue
            except CdreconError as exc:
                failures += 1
                click.echo(f"{path}: {exc}", err=True)
                continue
            click.echo(
                f"{path}: {stored.participants} participant and "
                f"{stored.conferences} conference records; "
                + (
                    complete.describe()
                    if complete is not None
                    else 'no end_time in it, so no "as of" recorded (give --as-of)'
                )
            )
            if stored.duplicate_ids:
                shown = ", ".join(stored.duplicate_ids[:5])
                more = ", …" if stored.duplicates > 5 else ""
                click.echo(
                    f"{path}: {stored.duplicates} id(s) found more than once, each "
                    f"stored once (its last copy): {shown}{more}"
                )
        return failures

    if _run(flags, run):
        raise SystemExit(1)


@main.command("pull-history")
@_DATABASE_OPTION
@click.option("--url", required=True, help="Management Node base URL, https://mn.example.com")
@click.option("--user", required=True, help="MN API user (HTTP Basic)")
@click.option("--password-file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False), help="CA file for TLS")
@click.option("--since", help="pull records that ended since this time (default: checkpoint)")
def pull_history(
    url: str, user: str, password_file: str, ca_bundle: str | None, since: str | None, **flags: Any
) -> None:
    """Pull participant and conference history from the MN's REST API, from the checkpoint."""
    from app.history.coverage import AsOf
    from app.history.pulling import pull_once
    from app.history.service import HistoryImport

    password = read_secret_file(Path(password_file), "--password-file", "MN password")

    async def run(_settings: Settings, engine: AsyncEngine) -> tuple[HistoryImport, AsOf]:
        pulled, as_of = await pull_once(
            engine,
            url,
            user,
            password,
            Path(ca_bundle) if ca_bundle else None,
            _when(since) if since else None,
        )
        counts = {"participants": pulled.participants, "conferences": pulled.conferences}
        await _audit(engine, "history.pull", url, {"user": user, "since": since, **counts})
        return pulled, as_of

    result, as_of = _run(flags, run)
    click.echo(
        f"{result.participants} participant and {result.conferences} conference records; "
        f"{as_of.describe()}"
    )


@main.command("reconcile")
@_DATABASE_OPTION
@click.option("--from", "from_", required=True, help="window start (ISO 8601, UTC)")
@click.option("--until", required=True, help="window end, exclusive (ISO 8601, UTC)")
@click.option("--tolerance", default="2s", show_default=True, help="start/end tolerance")
@click.option(
    "--force", is_flag=True, help="run even when no MN history covers the window (said in summary)"
)
def reconcile_command(from_: str, until: str, tolerance: str, force: bool, **flags: Any) -> None:
    """Match syslog CDRs with MN records over [from, until); prints the JSON summary.

    Refused when no MN history covers the window (import or pull it first), unless --force.
    """
    from app.audit.service import record
    from app.reconcile.service import reconcile
    from app.reconcile.tolerance import parse_tolerance

    start, end = _when(from_), _when(until)
    try:
        tolerance_us = round(parse_tolerance(tolerance) * 1_000_000)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tolerance") from exc

    async def audited(conn: AsyncConnection, summary: dict[str, Any]) -> None:
        window = {"from": summary["from"], "until": summary["until"]}
        await record(
            conn,
            _actor(),
            "reconciliation.run",
            str(summary["id"]),
            {
                **window,
                "tolerance": tolerance_us / 1_000_000,
                "forced": summary["coverage"]["forced"],
            },
        )

    async def run(_settings: Settings, engine: AsyncEngine) -> dict[str, Any]:
        return await reconcile(
            engine,
            round(start.timestamp() * 1_000_000),
            round(end.timestamp() * 1_000_000),
            tolerance_us,
            created_by=_actor(),
            force=force,
            then=audited,
        )

    summary = _run(flags, run)
    click.echo(json.dumps(summary, indent=2))


@main.group()
def token() -> None:
    """API tokens (the token is shown once; only its hash is stored)."""


def _in_transaction(flags: dict[str, Any], work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(conn)` in one committed transaction, as a CLI command's whole job."""

    async def run(_settings: Settings, engine: AsyncEngine) -> T:
        async with engine.begin() as conn:
            return await work(conn)

    return _run(flags, run)


@token.command("create")
@_DATABASE_OPTION
@click.argument("name")
@click.option("--scope", type=click.Choice(["admin", "billing"]), required=True)
def token_create(name: str, scope: str, **flags: Any) -> None:
    """Create a token NAME; prints the token alone on the last line."""
    from app.audit.service import record
    from app.auth.tokens import Scope, create_token

    async def work(conn: Any) -> str:
        secret = await create_token(conn, name, Scope(scope))
        await record(conn, _actor(), "token.create", name, {"scope": scope})
        return secret

    secret = _in_transaction(flags, work)
    click.echo(f"Token {name!r} ({scope}) created. It is shown only now:", err=True)
    click.echo(secret)


@token.command("list")
@_DATABASE_OPTION
def token_list(**flags: Any) -> None:
    """List tokens: name, scope, created, revoked."""
    from app.auth.tokens import list_tokens
    from app.times import iso

    for row in _in_transaction(flags, list_tokens):
        revoked = f"revoked {iso(row['revoked_us'])}" if row["revoked_us"] else "active"
        click.echo(f"{row['name']}\t{row['scope']}\tcreated {iso(row['created_us'])}\t{revoked}")


@token.command("revoke")
@_DATABASE_OPTION
@click.argument("name")
def token_revoke(name: str, **flags: Any) -> None:
    """Revoke token NAME; it stops working at once."""
    from app.audit.service import record
    from app.auth.tokens import revoke_token

    async def work(conn: Any) -> None:
        await revoke_token(conn, name)
        await record(conn, _actor(), "token.revoke", name)

    _in_transaction(flags, work)
    click.echo(f"token {name!r} revoked")


@main.command("export")
@_DATABASE_OPTION
@click.option("--run", "run_id", type=int, help="reconciliation run id (its missing_in_mn)")
@click.option("--status", default="missing_in_mn", show_default=True, help="with --run")
@click.option("--from", "from_", help="or: closed CDRs starting from this time (UTC)")
@click.option("--until", help="... until this time (exclusive)")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-")
@click.option("--protocol", multiple=True, help="only these protocols (repeatable)")
@click.option("--service-type")
@click.option("--conference")
@click.option("--has-media/--no-media", default=None)
@click.option("--min-duration", type=int, help="seconds")
@click.option("--include-exported", is_flag=True, help="also records exported before")
def export_command(
    run_id: int | None,
    status: str,
    from_: str | None,
    until: str | None,
    fmt: str,
    output: str,
    protocol: tuple[str, ...],
    service_type: str | None,
    conference: str | None,
    has_media: bool | None,
    min_duration: int | None,
    include_exported: bool,
    **flags: Any,
) -> None:
    """Create an export batch and write it (CSV or JSON lines) to a file or stdout."""
    from app.audit.service import record
    from app.export.service import ExportFormat, ExportRequest, create_export, stream_export

    if (run_id is None) == (from_ is None and until is None):
        raise click.UsageError("give --run, or a window with --from/--until")
    filters = {
        key: value
        for key, value in {
            "protocol": list(protocol),
            "service_type": service_type,
            "conference": conference,
            "has_media": has_media,
            "min_duration": min_duration,
            "include_exported": include_exported or None,
        }.items()
        if value
    }
    request = ExportRequest(
        run_id=run_id,
        status=status,
        from_us=round(_when(from_).timestamp() * 1_000_000) if from_ else None,
        until_us=round(_when(until).timestamp() * 1_000_000) if until else None,
        protocols=protocol,
        service_type=service_type,
        conference=conference,
        has_media=has_media,
        min_duration=min_duration,
        include_exported=include_exported,
        filters=filters,
    )

    async def run(_settings: Settings, engine: AsyncEngine) -> dict[str, Any]:
        async with engine.begin() as conn:
            manifest, _ = await create_export(conn, engine, request, _actor())
            source = {"run_id": run_id, "from": from_, "until": until}
            parameters = {
                **{key: value for key, value in source.items() if value is not None},
                **filters,
                "records": manifest["record_count"],
            }
            await record(conn, _actor(), "export.create", manifest["id"], parameters)
        with click.open_file(output, "wb") as out:
            async for chunk in stream_export(engine, manifest["id"], ExportFormat(fmt)):
                out.write(chunk)
        async with engine.begin() as conn:
            await record(conn, _actor(), "export.download", manifest["id"], {"format": fmt})
        return manifest

    manifest = _run(flags, run)
    click.echo(
        f"batch {manifest['id']}: {manifest['record_count']} records, "
        f"{manifest['total_duration']} s, sha256 {manifest['sha256'][fmt]}",
        err=True,
    )


if __name__ == "__main__":
    main()
