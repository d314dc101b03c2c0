"""Several `cdrecon` commands started together on a new database all succeed: the schema is
migrated once, under a lock, and the others find it built."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import CDRECON, POSTGRES_URL, free_port, postgres_available

TOKENS = 4


def _admin(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        dsn = make_url(POSTGRES_URL).set(drivername="postgresql")
        conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with no schema at all."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
        return
    if reason := postgres_available():
        pytest.skip(reason)
    name = f"cdrecon_new_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_serve_and_token_commands_started_together_all_succeed(
    new_database: str, tmp_path: Path
) -> None:
    http = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDRECON_")},
        "CDRECON_DATABASE_URL": new_database,
        "CDRECON_SYSLOG_TCP": f"127.0.0.1:{free_port()}",
        "CDRECON_SYSLOG_UDP": "off",
        "CDRECON_HTTP": f"127.0.0.1:{http}",
    }

    def start(*args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [CDRECON, *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    server = start("serve")
    commands = [start("token", "create", f"t{n}", "--scope", "admin") for n in range(TOKENS)]
    commands.append(start("db", "upgrade"))
    try:
        outcomes = [(c.args, c.wait(120), c.communicate()[1].decode()) for c in commands]
        failed = [outcome for outcome in outcomes if outcome[1] != 0]
        assert not failed, failed
        deadline = time.monotonic() + 60
        while server.poll() is None and time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{http}/healthz", timeout=1, verify=False)
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert server.poll() is None, server.communicate()[1].decode()
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(60)
    assert server.returncode == 0, server.communicate()[1].decode()
    listed = subprocess.run(
        [CDRECON, "token", "list"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert sorted(line.split("\t")[0] for line in listed.splitlines()) == [
        f"t{n}" for n in range(TOKENS)
    ]
