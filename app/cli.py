"""The `cdrecon` command line. Each command is a few lines calling the service code."""

from __future__ import annotations

import asyncio
import logging
import sys
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


if __name__ == "__main__":
    main()
