"""Shared fixtures: free ports, a real `cdrecon serve` process, real databases."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

POSTGRES_URL = os.environ.get(
    "CDRECON_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
CDRECON = str(Path(sys.executable).with_name("cdrecon"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that share a module- or package-scoped fixture (a running service, a loaded
    database) are one `xdist_group`: under `--dist loadgroup` one worker runs them all and
    builds the fixture once, where `--dist load` built it again on every worker that drew
    one of them. A test with an `xdist_group` mark of its own keeps it."""
    for item in items:
        if not isinstance(item, pytest.Function) or item.get_closest_marker("xdist_group"):
            continue
        group = ""
        for definitions in item._fixtureinfo.name2fixturedefs.values():
            shared = definitions[-1]
            if shared.scope == "package":
                group = shared.baseid
                break
            if shared.scope == "module":
                group = item.nodeid.split("::")[0]
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody listens on right now (TCP and UDP checked together for syslog)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def postgres_available() -> str | None:
    """None when the test PostgreSQL server answers, else the reason to skip."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return None
    except OSError as exc:
        return f"no PostgreSQL server at 127.0.0.1:5432 ({exc}); set CDRECON_TEST_POSTGRES_URL"


def cdrecon(
    database_url: str, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run `cdrecon ARGS` on a database as an operator would: its exit code and output."""
    env = {**os.environ, "CDRECON_DATABASE_URL": database_url}
    return subprocess.run([CDRECON, *args], env=env, input=stdin, capture_output=True, timeout=120)


async def _create_token(database_url: str, name: str, scope: str) -> str:
    """What `cdrecon token create NAME --scope SCOPE` does in its transaction."""
    from app.audit.service import record
    from app.auth.tokens import Scope, create_token
    from app.db.engine import create_engine

    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            secret = await create_token(conn, name, Scope(scope))
            await record(conn, f"cli:{getpass.getuser()}", "token.create", name, {"scope": scope})
            return secret
    finally:
        await engine.dispose()


class PortTaken(Exception):
    """Another process bound one of the ports picked for the service."""


@dataclass
class Service:
    """A `cdrecon serve` subprocess on free loopback ports with its own SQLite file.

    Its HTTP calls pass `verify=False`: they are plain HTTP on loopback, and without it every
    call loads the system CA bundle, which dominates polling loops such as `wait_for`.
    """

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    tcp_port: int = 0
    udp_port: int = 0
    tls_port: int = 0
    http_port: int = 0
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def db_path(self) -> Path:
        return self.workdir / "cdrecon.db"

    @property
    def database_url(self) -> str:
        """Its database: CDRECON_DATABASE_URL when the test chose one, else its SQLite file."""
        return self.env.get("CDRECON_DATABASE_URL", f"sqlite+aiosqlite:///{self.db_path}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log(self) -> str:
        path = self.workdir / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until healthy; new free ports if another process took ours. The
        bound is for a machine loaded many times over (a start takes 1-2 s when quiet)."""
        for _attempt in range(5):
            if not self.http_port:
                self.tcp_port = free_port()
                self.udp_port = free_port()
                self.http_port = free_port()
                self.tls_port = free_port()
            try:
                self._start_once(timeout)
                return
            except PortTaken:
                self.http_port = 0
        raise RuntimeError(f"no free ports for cdrecon serve:\n{self.log}")

    def _start_once(self, timeout: float) -> None:
        env = {
            **os.environ,
            "CDRECON_DATABASE_URL": f"sqlite+aiosqlite:///{self.db_path}",
            "CDRECON_SYSLOG_TCP": f"127.0.0.1:{self.tcp_port}",
            "CDRECON_SYSLOG_UDP": f"127.0.0.1:{self.udp_port}",
            "CDRECON_HTTP": f"127.0.0.1:{self.http_port}",
            **self.env,
        }
        if env.get("CDRECON_TLS_CERT"):  # without a certificate a TLS listener is refused
            env.setdefault("CDRECON_SYSLOG_TLS", f"127.0.0.1:{self.tls_port}")
        with open(self.workdir / "serve.log", "ab") as log:
            self.process = subprocess.Popen(
                [CDRECON, "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                if "address already in use" in self.log.lower():
                    (self.workdir / "serve.log").unlink()
                    raise PortTaken()
                raise RuntimeError(f"cdrecon serve exited early:\n{self.log}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5, verify=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"cdrecon serve did not become healthy:\n{self.log}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def cli(self, *args: str, stdin: bytes | None = None, check: bool = True) -> str:
        """Run a `cdrecon` command against this service's database; its stdout."""
        done = cdrecon(self.database_url, *args, stdin=stdin)
        if check and done.returncode != 0:
            raise AssertionError(f"cdrecon {' '.join(args)} failed:\n{done.stderr.decode()}")
        return done.stdout.decode()

    def token(self, name: str = "test-admin", scope: str = "admin") -> str:
        """An API token (created once per name) in this service's database, written as
        `cdrecon token create` writes it: the token and its audit entry, by the OS user. In
        this process: the command's own start (about 2 CPU-seconds) was most of what a test
        paid for each token. tests/test_cli_audit.py runs the command itself."""
        if name not in self.tokens:
            url = self.database_url
            # A thread of its own: async tests call this inside their running event loop.
            with concurrent.futures.ThreadPoolExecutor(1) as thread:
                self.tokens[name] = thread.submit(
                    asyncio.run, _create_token(url, name, scope)
                ).result()
        return self.tokens[name]

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        """GET with an admin token unless another is given ("" sends none)."""
        token = self.token() if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=30, verify=False)

    def post(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        """POST with an admin token unless another is given ("" sends none)."""
        token = self.token() if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        return httpx.post(f"{self.url}{path}", headers=headers, timeout=60, verify=False, **kwargs)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for line in self.get("/metrics", token="").text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            if series.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    def wait_for(self, name: str, target: float, timeout: float = 60.0, **labels: str) -> float:
        """Poll a metric until it reaches `target`; return its last value."""
        deadline = time.monotonic() + timeout
        value = self.metric(name, **labels)
        while value < target and time.monotonic() < deadline:
            time.sleep(0.05)
            value = self.metric(name, **labels)
        return value


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """A running `cdrecon serve`; stopped (SIGTERM) after the test."""
    svc = Service(tmp_path)
    yield svc
    if svc.process is not None:
        svc.stop()


def send_with_logger(logger: str, service: Service, lines: Path, timeout: float) -> None:
    """Send each line of `lines` to the service over TCP as the nodes do: util-linux
    `logger`, RFC 5424, octet-counted, tagged `pexip`."""
    subprocess.run(
        [
            *(logger, "-n", "127.0.0.1", "-P", str(service.tcp_port), "--tcp"),
            *("--octet-count", "--rfc5424", "-t", "pexip", "-f", str(lines)),
        ],
        check=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def logger_path() -> str:
    """util-linux `logger`, the real sender used by the end-to-end tests."""
    path = shutil.which("logger")
    if path is None:
        pytest.skip("util-linux `logger` is not installed (apt-get install bsdutils)")
    return path


@contextlib.contextmanager
def new_postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database, built by the migrations; dropped on exit. Skips the
    test when there is no server."""
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    import asyncio
    import uuid

    import asyncpg
    from sqlalchemy.engine import make_url

    from app.db.migrate import upgrade

    base = make_url(POSTGRES_URL)
    name = f"cdrecon_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def service_on(
    database: str, workdir: Path, env: dict[str, str] | None = None
) -> Iterator[Service]:
    """A started `cdrecon serve` on a database of its own, "sqlite" (a file in `workdir`) or
    "postgresql" (a new database; skips without a server): for module-scoped services
    whose tests only add to what they find. Stopped, and PostgreSQL's dropped, on exit."""
    with contextlib.ExitStack() as stack:
        if database == "sqlite":
            database_url = f"sqlite+aiosqlite:///{workdir / 'cdrecon.db'}"
        else:
            database_url = stack.enter_context(new_postgres_database())
        service = Service(workdir, env={"CDRECON_DATABASE_URL": database_url, **(env or {})})
        try:
            service.start()
            yield service
        finally:
            if service.process is not None:
                service.stop()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, built by the migrations."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite file built by the migrations, once per session (per worker): copying
    it is the same file in a millisecond, where migrating again took a fraction of a second
    on each of the ~130 tests that ask for one."""
    from app.db.migrate import upgrade

    path = tmp_path_factory.mktemp("migrated") / "cdrecon.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    # Every connection is closed: the file holds the whole schema, no WAL beside it.
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database: a copy of the migrated SQLite file, or the session's
    PostgreSQL database."""
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    import asyncio

    import asyncpg
    from sqlalchemy.engine import make_url

    async def truncate() -> None:
        conn = await asyncpg.connect(
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        try:
            from app.db.models import metadata

            tables = ", ".join(table.name for table in metadata.sorted_tables)
            await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY")
        finally:
            await conn.close()

    asyncio.run(truncate())
    return url


@contextlib.asynccontextmanager
async def writes_held(database_url: str, table: str) -> AsyncIterator[None]:
    """From another connection, hold SQLite's write lock, or an exclusive lock on PostgreSQL's
    `table` (reads go on; writes wait), as a busy or stuck database would."""
    import sqlite3

    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        lock = sqlite3.connect(url.database, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lock.rollback()
            lock.close()
        return
    conn = await asyncpg.connect(
        url.set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        yield
        await transaction.rollback()
    finally:
        await conn.close()
