"""The deriving process: derives call events and CDRs beside the batch writer, on another core.

With `CDRECON_DERIVE_PROCESS`, `serve`'s writer stores every batch raw and lists it
(`pending_derivations`, in the same transaction); `DeriveWorker`, in the service's
process, runs `python -m app.cdr.worker`, says through its stdin when a batch was listed,
reads a JSON line per derived run from its stdout (what it produced, what is still listed),
and starts it again if it ends. The process (`derive_listed`) derives the listed runs
oldest first, each in a transaction of its own, and then waits for word. Everything it
works from is in the database, so killing either process loses nothing committed, and a
new process resumes with what is still listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict

from app.db.engine import create_engine

from . import pending
from .deriving import Derived, catch_up_found_first
from .legcache import LegCache

log = logging.getLogger(__name__)

# Seconds the process waits for word before it looks at the list anyway: another writer
# (a second receiver, a stop that left work) lists without telling it.
POLL = 1.0
# Seconds between a deriving process ending unasked and the next one starting.
RESTART_DELAY = 1.0
# Seconds a stop waits for the process to finish its run before it kills it (a killed run
# rolls back and stays listed).
STOP_BOUND = 10.0
# The environment variable that hands the database URL to the process (not its command
# line, which every local user can read).
URL_VARIABLE = "CDRECON_DATABASE_URL"


class DeriveWorker:
    """The deriving process, seen from the service: start, tell, hear, restart, stop."""

    def __init__(self, database_url: str, sqlite_synchronous: str, log_level: str) -> None:
        self._url = database_url
        self._synchronous = sqlite_synchronous
        self._log_level = log_level
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        """The process id of the running deriving process, if one runs."""
        process = self._process
        return None if process is None or process.returncode is not None else process.pid

    async def start(self, derived: Callable[[int, Derived], None]) -> None:
        """Start the process, and keep one running until `stop`; `derived(listed, result)`
        hears of each run it derives, with the messages still listed."""
        self._process = await self._spawn()
        self._task = asyncio.create_task(self._supervise(derived), name="cdrecon-derive-worker")

    def notify(self) -> None:
        """Say that a batch was listed (a byte on its stdin; a missed one costs a poll)."""
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            return
        # If it ended, the supervisor starts another, which looks at the list.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.write(b"\n")

    async def stop(self) -> None:
        """Close its stdin (it ends after its run), wait `STOP_BOUND`, then kill it."""
        self._stopping = True
        if self._process is not None:
            await _end(self._process)
        if self._task is not None:
            await self._task

    async def _spawn(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cdr.worker",
            self._synchronous,
            self._log_level,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, URL_VARIABLE: self._url},
        )
        log.info("deriving process %d started", process.pid)
        return process

    async def _supervise(self, derived: Callable[[int, Derived], None]) -> None:
        while True:
            process = self._process
            assert process is not None and process.stdout is not None
            while line := await process.stdout.readline():
                try:
                    report = json.loads(line)
                    listed = int(report.pop("listed"))
                    result = Derived(**report)
                except (ValueError, TypeError, KeyError):
                    log.warning("unreadable report from the deriving process: %r", line[:200])
                    continue
                derived(listed, result)
            code = await process.wait()
            if self._stopping:
                return
            log.error(
                "the deriving process ended (exit status %s); starting another in %.0fs",
                code,
                RESTART_DELAY,
            )
            await asyncio.sleep(RESTART_DELAY)
            if self._stopping:
                return
            try:
                self._process = await self._spawn()
            except OSError:
                log.exception("starting the deriving process failed; trying again")
                continue
            if self._stopping:  # `stop` came while it started
                await _end(self._process)
                return


async def _end(process: asyncio.subprocess.Process) -> None:
    """Close the process's stdin (it ends after its run), wait `STOP_BOUND`, then kill it."""
    if process.returncode is not None:
        return
    if process.stdin is not None:
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), STOP_BOUND)
    except TimeoutError:
        log.warning("the deriving process did not stop in %.0fs; killing it", STOP_BOUND)
        process.kill()
        await process.wait()


class _Word(asyncio.Protocol):
    """The service's notices on stdin: any byte means "look at the list"; EOF, "stop"."""

    def __init__(self) -> None:
        self.given = asyncio.Event()
        self.closed = False

    def data_received(self, data: bytes) -> None:
        self.given.set()

    def eof_received(self) -> bool | None:
        self.closed = True
        self.given.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.given.set()


async def derive_listed(database_url: str, sqlite_synchronous: str) -> None:
    """Derive what is listed until stdin closes: the deriving process's whole work."""
    loop = asyncio.get_running_loop()
    word = _Word()
    await loop.connect_read_pipe(lambda: word, sys.stdin)
    engine = create_engine(database_url, sqlite_synchronous=sqlite_synchronous)
    cache = LegCache()
    idle = False  # whether the service heard that nothing is listed
    try:
        while not word.closed:
            word.given.clear()
            while not word.closed:
                try:
                    taken, derived = await catch_up_found_first(engine, cache)
                    if taken is None and idle:
                        break
                    async with engine.connect() as conn:
                        listed = await pending.count(conn)
                except Exception:
                    # The database failed, not the deriving: the run stays listed.
                    cache.clear()
                    log.exception("deriving a listed run failed; retrying")
                    await asyncio.sleep(RESTART_DELAY)
                    continue
                idle = taken is None
                _report(listed, derived)
                if idle:
                    break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(word.given.wait(), POLL)
    finally:
        await engine.dispose()


def _report(listed: int, derived: Derived) -> None:
    """Tell the service what a run produced and how many messages are still listed."""
    sys.stdout.write(json.dumps({"listed": listed, **asdict(derived)}) + "\n")
    sys.stdout.flush()


def main() -> None:
    """`python -m app.cdr.worker SYNCHRONOUS LOG_LEVEL`, the database URL in the
    environment: started by `DeriveWorker`, not by hand."""
    synchronous, level = sys.argv[1:3]
    # A stop is the service closing our stdin; a signal to the whole process group (Ctrl-C,
    # a service manager) is for the service, which then closes it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[derive]: %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(derive_listed(os.environ[URL_VARIABLE], synchronous))


if __name__ == "__main__":
    main()
