"""Alembic environment: runs migrations over the async engine of the configured URL."""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.models import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = metadata


def _url() -> str:
    # `alembic` run by hand reads alembic.ini; let CDRECON_DATABASE_URL override it there too.
    if config.config_file_name and os.environ.get("CDRECON_DATABASE_URL"):
        return os.environ["CDRECON_DATABASE_URL"]
    return str(config.get_main_option("sqlalchemy.url"))


def _run(connection: Connection) -> None:
    if connection.dialect.name == "sqlite" and _empty(connection):
        # Must precede the first table (SQLite fixes it when the file is created): retention
        # hands pruned pages back to the file system with PRAGMA incremental_vacuum, while
        # ingest goes on; without it only a full VACUUM, which stops every writer, could.
        # Only on an empty file: on a database in use the pragma would wait for the writer.
        connection.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _empty(connection: Connection) -> bool:
    return connection.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar() == 0


async def _run_async() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
