"""The deriving process: finds call events and assembles legs beside the batch writer, on
another core, and hands the rows back to the writer to store.

With `CDRECON_DERIVE_PROCESS`, `serve`'s writer stores every batch raw and lists it
(`pending_derivations`, in the same transaction); `DeriveWorker`, in the service's
process, runs `python -m app.cdr.worker`, says through its stdin when a batch was listed
and which derivations were stored, reads the derivations it builds from its stdout, hands
them to the writer's `Deriver`, and starts the process again if it ends. The process
(`derive_listed`) only reads the database: it takes the oldest listed runs it has not
handed on, builds their derivation (app/cdr/derivation.py: new events, links, whole CDR
rows and the basis they were assembled on), and sends it. The writer stores it in its
own transaction, which strikes the runs off: SQLite keeps one writer and no lock changes
hands. Everything the process works from is in the database, so killing either process
loses nothing committed, and a new process resumes with what is still listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pickle
import signal
import struct
import sys
import time
from collections import deque
from collections.abc import Callable

from app.db.engine import create_engine, existing_only

from . import pending
from .derivation import Derivation, View

log = logging.getLogger(__name__)

# Seconds the process waits for word before it looks at the list anyway: another writer
# (a second receiver, a stop that left work) lists without telling it.
POLL = 1.0
# Seconds between a deriving process ending unasked and the next one starting.
RESTART_DELAY = 1.0
# Seconds a stop waits for the process to finish its derivation before it kills it.
STOP_BOUND = 10.0
# The environment variable that hands the database URL to the process (not its command
# line, which every local user can read).
URL_VARIABLE = "CDRECON_DATABASE_URL"
# Messages one derivation takes, over as many listed runs as that holds: under steady
# traffic each of the writer's small batches is a run, and a transaction per run costs the
# writer more than storing the runs' rows.
RUN_MESSAGES = 5000
# Derivations handed on and not yet heard stored, at most: the process keeps ahead of the
# writer by this much, and the writer's memory holds no more.
AHEAD = 2
# A derivation on the pipe: its length, then the pickle (both ends are this program).
_LENGTH = struct.Struct(">I")
# SQLite page cache of the process's reading connection, in KiB (the writer's is 16 MiB):
# it reads the newest messages, which the operating system's cache holds anyway.
READ_CACHE_KIB = 2048
# Bytes of copies (`pending.Fed`) the service lets wait in the pipe: past them the process
# is behind, and it reads those runs from the database instead.
FEED_BUFFER = 4 * 1024 * 1024
# Bytes of the process's stdin pipe: a copy of a 5,000-message batch, packed, in one write.
PIPE_SIZE = 1024 * 1024
# Messages of copies the process keeps for runs it has not taken yet (the oldest go first).
FEED_MESSAGES = 10_000
# Seconds the process waits for the copy of the oldest listed run while copies arrive: the
# writer sends it just after the commit that lists the run, which the process may see first.
COPY_WAIT = 0.2
# Copies "arrive" while one is being received or one came within this many seconds.
COPIES_LATELY = 2.0


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

    async def start(self, handed: Callable[[Derivation], None]) -> None:
        """Start the process, and keep one running until `stop`; `handed(derivation)` gets
        each derivation it builds, in order."""
        self._process = await self._spawn()
        self._task = asyncio.create_task(self._supervise(handed), name="cdrecon-derive-worker")

    def notify(self) -> None:
        """Say that a batch was listed (a line on its stdin; a missed one costs a poll)."""
        self._say(b"\n")

    def heard(self, sequence: int, stored: bool) -> None:
        """Say that its derivation `sequence` was stored (or, not `stored`, was stale)."""
        self._say(b"%s %d\n" % (b"S" if stored else b"R", sequence))

    def feed(self, fed: pending.Fed) -> None:
        """Hand it the copy of a run just listed, unless it is behind with those."""
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            return
        if process.stdin.transport.get_write_buffer_size() > FEED_BUFFER:
            return
        data = pickle.dumps(fed, protocol=pickle.HIGHEST_PROTOCOL)
        self._say(b"F %d\n" % len(data), data)

    def _say(self, *parts: bytes) -> None:
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            return
        # If it ended, the supervisor starts another, which starts from the database.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.writelines(parts)

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
        _widen(process)
        return process

    async def _supervise(self, handed: Callable[[Derivation], None]) -> None:
        while True:
            process = self._process
            assert process is not None and process.stdout is not None
            while derivation := await _receive(process.stdout):
                handed(derivation)
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


def _widen(process: asyncio.subprocess.Process) -> None:
    """Give the process's stdin a pipe that holds a batch's copy (Linux; elsewhere, or
    past the system's limit, the pipe stays as it is and copies go through in pieces)."""
    resize = getattr(fcntl, "F_SETPIPE_SZ", None)
    pipe = None if process.stdin is None else process.stdin.transport.get_extra_info("pipe")
    if resize is None or pipe is None:
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), resize, PIPE_SIZE)


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


async def _receive(stream: asyncio.StreamReader) -> Derivation | None:
    """The next derivation from the process; None once it has ended (or sent nonsense)."""
    try:
        (length,) = _LENGTH.unpack(await stream.readexactly(_LENGTH.size))
        derivation = pickle.loads(await stream.readexactly(length))
    except asyncio.IncompleteReadError:
        return None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
        log.exception("unreadable derivation from the deriving process; restarting it")
        return None
    if not isinstance(derivation, Derivation):
        log.error("the deriving process sent %s, not a derivation", type(derivation).__name__)
        return None
    return derivation


class _Word(asyncio.Protocol):
    """The service's word on stdin, a line each: an empty one means "look at the list",
    `S n` "derivation n was stored", `R n` "it was stale", `F n` "the copy of a listed run
    follows, in n bytes"; EOF means "stop"."""

    def __init__(self) -> None:
        self.given = asyncio.Event()
        self.closed = False
        self.heard: deque[tuple[int, bool]] = deque()
        self.fed: dict[int, pending.Fed] = {}  # by first id, oldest first
        self._fed_messages = 0
        self._buffer = bytearray()
        self._copy_size: int | None = None  # bytes of the copy being received
        self._last_copy = -COPIES_LATELY  # time.monotonic() the last copy was kept
        self._waiting: tuple[int, float] | None = None  # (first id, since) in `awaits_copy`
        self._dropped: set[int] = set()  # first ids of copies let go unused: never waited for

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            if self._copy_size is not None:
                if len(buffer) < self._copy_size:
                    break
                copy = bytes(buffer[: self._copy_size])
                del buffer[: self._copy_size]
                self._copy_size = None
                self._keep(copy)
                self.given.set()
                continue
            end = buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line[:1] in (b"S", b"R"):
                self.heard.append((int(line[2:]), line[:1] == b"S"))
            elif line[:1] == b"F":
                self._copy_size = int(line[2:])
                continue  # nothing to act on until the copy is whole
            self.given.set()

    def awaits_copy(self, runs: list[tuple[int, int]]) -> bool:
        """Whether to wait a moment for the copy of the oldest of `runs` rather than read it
        back: copies arrive, and this one has not yet, for less than `COPY_WAIT`."""
        first, last = runs[0]
        if first in self._dropped:
            return False  # behind by more than the copies kept: it came and was let go
        copy = self.fed.get(first)
        now = time.monotonic()
        if (copy is not None and copy.last == last) or (
            self._copy_size is None and now - self._last_copy > COPIES_LATELY
        ):
            return False
        if self._waiting is None or self._waiting[0] != first:
            self._waiting = (first, now)
        return now - self._waiting[1] < COPY_WAIT

    def _keep(self, data: bytes) -> None:
        fed = pickle.loads(data)
        if not isinstance(fed, pending.Fed):
            return
        self.fed[fed.first] = fed
        self._fed_messages += len(fed.raws)
        self._last_copy = time.monotonic()
        while self._fed_messages > FEED_MESSAGES:
            oldest = next(iter(self.fed))
            self._fed_messages -= len(self.fed.pop(oldest).raws)
            self._dropped.add(oldest)

    def used(self, upto: int) -> None:
        """Forget the copies of runs from `upto` back: taken, or read from the database."""
        for first in [first for first in self.fed if first <= upto]:
            self._fed_messages -= len(self.fed.pop(first).raws)
        self._dropped = {first for first in self._dropped if first > upto}

    def eof_received(self) -> bool | None:
        self.closed = True
        self.given.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.given.set()


async def derive_listed(database_url: str, sqlite_synchronous: str, out: int) -> None:
    """Derive what is listed, handing each derivation on through the file descriptor
    `out`, until stdin closes: the deriving process's whole work."""
    loop = asyncio.get_running_loop()
    word = _Word()
    await loop.connect_read_pipe(lambda: word, sys.stdin)
    engine = create_engine(
        existing_only(database_url),
        sqlite_synchronous=sqlite_synchronous,
        sqlite_cache_kib=READ_CACHE_KIB,
    )
    view = View(os.getpid())
    claims = pending.Claims(engine, pending.lister(os.getppid()))  # its writer is the parent
    try:
        while not word.closed:
            word.given.clear()
            while word.heard:
                view.heard(*word.heard.popleft())
            if not view.ready() or view.outstanding >= AHEAD:
                await _wait(word)
                continue
            try:
                async with engine.connect() as conn:
                    runs = await claims.oldest(conn, RUN_MESSAGES, view.handed_runs())
                    if runs and word.awaits_copy(runs):
                        derivation = None
                    else:
                        stored = await pending.messages_of(conn, runs, word.fed)
                        derivation = await view.build(conn, runs, stored) if runs else None
                if runs and derivation is not None:
                    word.used(runs[-1][0])
            except Exception:
                # The database failed, or a bug: the runs stay listed.
                log.exception("deriving listed runs failed; retrying")
                await asyncio.sleep(RESTART_DELAY)
                continue
            if derivation is None:
                await _wait(word, COPY_WAIT if runs else POLL)
                continue
            _send(out, derivation)
    finally:
        await claims.close()
        await engine.dispose()


async def _wait(word: _Word, seconds: float = POLL) -> None:
    """Until the service says something, or `seconds`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(word.given.wait(), seconds)


def _send(out: int, derivation: Derivation) -> None:
    """Hand `derivation` to the service (blocks while the pipe is full: the service reads it
    as it stores)."""
    data = pickle.dumps(derivation, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_LENGTH.pack(len(data)) + data)
    while view:
        view = view[os.write(out, view) :]


def main() -> None:
    """`python -m app.cdr.worker SYNCHRONOUS LOG_LEVEL`, the database URL in the
    environment: started by `DeriveWorker`, not by hand."""
    synchronous, level = sys.argv[1:3]
    # A stop is the service closing our stdin; a signal to the whole process group (Ctrl-C,
    # a service manager) is for the service, which then closes it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Derivations go out on the original stdout; whatever else writes to it lands on stderr.
    out = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[derive]: %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(derive_listed(os.environ[URL_VARIABLE], synchronous, out))


if __name__ == "__main__":
    main()
