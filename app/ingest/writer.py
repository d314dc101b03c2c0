"""The one batch writer: queues frames from every source and commits them in batches.

Durability point: a message counts as stored when its batch's transaction has committed.
The loss window after a hard kill is therefore what is queued plus the batch in flight:
at most `queue_high_water` + one chunk per connection, and in steady state one batch.
When the database falls behind, the queue passes a high-water mark (in messages or in bytes,
whichever comes first) and the writer pauses the readers (TCP back-pressure) until it drains
below both low-water marks. Before that, past the low-water marks, one sender may hold at
most half of the queue while another is active (`Shares`): a flood or a sender of huge
frames is held back alone (a TCP or TLS connection paused; for UDP the datagram dropped
and the socket paused), and the others are not kept waiting behind it.

Deriving call events and CDRs costs about three times what storing the raw messages does.
The writer hands each batch it stores to its `Deriver` (app/cdr/deriving.py), which decides
whether to derive it at once or later, and gives it its idle time to catch up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    ProgrammingError,
    StatementError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.cdr.deriving import Deriver, Elsewhere, FoundEvents
from app.db.checkpoint import WalCheckpointer
from app.db.partitions import partitioned
from app.metrics import Metrics
from parsers.framing import Frame
from parsers.limits import NUL_REPLACEMENT
from parsers.syslog import SyslogFormat, SyslogMessage

from . import spill
from .origin import Origin
from .prepare import PreparedChunk, prepare_chunk
from .repository import MessageRepository
from .rows import Batch, add_frames, copy_of
from .shares import Shares
from .spill import Chunk

log = logging.getLogger(__name__)


# Frames prepared between two turns of the event loop.
YIELD_EVERY = 500
# Seconds without a commit, messages queued, before the writer counts as stalled (/healthz):
# longer than any healthy batch takes, short enough for an alert to mean something.
HEALTH_GRACE = 10.0
# Seconds a stop waits for a commit while messages are queued before it spills them.
STOP_BOUND = 10.0
MIB = 1024 * 1024


class Pausable(Protocol):
    """A reader the writer can stop and restart: an asyncio transport."""

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def is_closing(self) -> bool: ...


class BatchWriter:
    """Collects frames from all receivers and commits them, one transaction per batch."""

    def __init__(
        self,
        engine: AsyncEngine,
        metrics: Metrics,
        *,
        batch_size: int = 5000,
        linger: float = 0.02,
        high_water: int = 20000,
        low_water: int = 5000,
        udp_limit: int = 200000,
        high_water_bytes: int = 64 * MIB,
        low_water_bytes: int = 16 * MIB,
        udp_limit_bytes: int = 128 * MIB,
        defer_backlog: int | None = 5000,
        quarantine_path: Path | None = None,
        spill_path: Path | None = None,
        stop_bound: float = STOP_BOUND,
        derive_elsewhere: Elsewhere | None = None,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self.batch_size = batch_size
        self.linger = linger
        self.high_water = high_water
        self.low_water = min(low_water, high_water)
        self.udp_limit = max(udp_limit, high_water)
        self.high_water_bytes = high_water_bytes
        self.low_water_bytes = min(low_water_bytes, high_water_bytes)
        self.udp_limit_bytes = max(udp_limit_bytes, high_water_bytes)
        self._ready = asyncio.Event()
        self._deriver = Deriver(
            engine, metrics, defer_backlog, derive_elsewhere, wake=self._ready.set
        )
        self._chunks: deque[Chunk] = deque()
        self._pending = 0
        self._pending_bytes = 0  # the frames' bytes of the messages in `_pending`
        self._held: set[Pausable] = set()
        self._shares = Shares()
        self._room = asyncio.Event()
        self._room.set()
        self._drained = asyncio.Event()
        self._drained.set()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._repository: MessageRepository | None = None
        self._checkpointer = WalCheckpointer.for_engine(engine)
        self._finish_deriving = True
        self._last_submit = 0.0  # time.monotonic() of the last frames queued
        # For `stalled` and the gauge: when a transaction last committed, when the queue last
        # stopped being empty (time.monotonic()), and why the last commit failed.
        self._last_commit = time.monotonic()
        self._waiting_since = self._last_commit
        self._failure: str | None = None
        metrics.since_commit.set_function(lambda: time.monotonic() - self._last_commit)
        self.quarantine_path = quarantine_path or beside_database(engine, "quarantine.jsonl")
        self.spill_path = spill_path or beside_database(engine, "spill.jsonl")
        self.stop_bound = stop_bound
        self._unspilled = 0  # messages read from the spill file and not yet committed
        # The batch being stored, and how many of its first messages are settled (committed,
        # stored raw or quarantined): the rest is what a stop must spill.
        self._inflight: list[Chunk] = []
        self._settled = 0

    @property
    def pending(self) -> int:
        """Messages queued and not yet committed."""
        return self._pending

    def start(self) -> None:
        """Start committing in the background, first what an earlier stop spilled."""
        if self.spill_path.exists():
            chunks = spill.read(self.spill_path)
            self._unspilled = sum(len(frames) for _, _, frames in chunks)
            log.warning(
                "storing %d messages an earlier stop spilled to %s first",
                self._unspilled,
                self.spill_path,
            )
            self._chunks.extendleft(reversed(chunks))
            self._pending += self._unspilled
            self._pending_bytes += sum(_size(frames) for _, _, frames in chunks)
            now = time.monotonic()
            for origin, _, frames in chunks:
                self._shares.add(origin, len(frames), _size(frames), now)
            if self._pending:
                self._drained.clear()
                self._waiting_since = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="cdrecon-batch-writer")
        if self._checkpointer is not None:
            self._checkpointer.start()

    async def stop(self, finish_deriving: bool = True) -> None:
        """Commit everything queued, then end. Call after the receivers have stopped.

        With `finish_deriving`, first derive every deferred message too; without it, they
        stay listed and the next writer on this database derives them. If messages wait
        `stop_bound` seconds without a commit (the database takes no writes), what is not
        committed is written to the spill file instead, which the next `start` stores first."""
        self._stopping = True
        self._finish_deriving = finish_deriving
        self._ready.set()
        if self._task is not None:
            task, self._task = self._task, None
            stopped = time.monotonic()
            while not task.done():
                await asyncio.wait([task], timeout=0.1)
                since = max(self._last_commit, self._waiting_since, stopped)
                if self._pending and time.monotonic() - since >= self.stop_bound:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    self._spill()
            if not task.cancelled() and task.exception() is not None:
                await task  # a bug in the writer: raise it
            await self._deriver.stop(self._finish_deriving)
        if self._checkpointer is not None:
            await self._checkpointer.stop()

    def _spill(self) -> None:
        """Write every message not committed to the spill file (replacing one read at start,
        whose messages are among them if still uncommitted)."""
        lines = []
        settled = self._settled
        for origin, received_us, frames in [*self._inflight, *self._chunks]:
            for frame in frames:
                if settled:
                    settled -= 1  # the in-flight batch's first messages are stored
                    continue
                lines.append(spill.entry(origin, received_us, frame))
        try:
            spill.replace(self.spill_path, lines)
        except OSError:
            log.exception("spilling %d messages failed; they are lost", len(lines))
            self._metrics.dropped.labels("all", "spill_failed").inc(len(lines))
            return
        log.error(
            "the database took no writes for %.0fs: %d messages not committed, spilled to %s",
            self.stop_bound,
            len(lines),
            self.spill_path,
        )

    def submit(self, origin: Origin, frames: list[Frame], received_us: int | None = None) -> bool:
        """Queue frames read from `origin`. True means: stop reading from it (the queue is
        over high water, or `origin` holds more than its share of a busy queue; for UDP, only
        the share: the datagram was dropped, and reading the socket on would only cost the
        other senders CPU)."""
        if not frames:
            return self._over_high_water()
        count = len(frames)
        size = _size(frames)
        now = time.monotonic()
        if origin.transport == "udp":
            # UDP cannot be slowed down: past a limit, drop visibly rather than grow.
            if self._udp_full(size):
                self._metrics.dropped.labels("udp", "queue_full").inc(count)
                return False
            if self._busy() and self._shares.over_half(origin, now, count, size):
                self._metrics.dropped.labels("udp", "fair_share").inc(count)
                return True
        self._metrics.received.labels(origin.transport).inc(count)
        if received_us is None:
            received_us = time.time_ns() // 1000
        self._chunks.append((origin, received_us, frames))
        self._last_submit = now
        if not self._pending:
            self._waiting_since = self._last_submit
        self._pending += count
        self._pending_bytes += size
        self._shares.add(origin, count, size, now)
        self._drained.clear()
        self._metrics.queue.set(self._pending)
        self._metrics.queue_bytes.set(self._pending_bytes)
        self._ready.set()
        if self._over_high_water():
            self._room.clear()
            return origin.transport != "udp"  # UDP has its own limits, above
        return origin.transport != "udp" and self._busy() and self._shares.over_half(origin, now)

    def _udp_full(self, size: int) -> bool:
        """Whether a datagram of `size` bytes finds the queue full. While TCP or TLS readers
        are held back, UDP may fill it only to the low-water marks, where they resume: a UDP
        flood cannot keep the senders that wait from ever being read again. Without held
        readers, UDP has the whole limit (bursts, a slow database)."""
        if self._held:
            messages, size_limit = self.low_water, self.low_water_bytes
        else:
            messages, size_limit = self.udp_limit, self.udp_limit_bytes
        return self._pending >= messages or self._pending_bytes + size > size_limit

    def _over_high_water(self) -> bool:
        return self._pending >= self.high_water or self._pending_bytes >= self.high_water_bytes

    def _busy(self) -> bool:
        """Whether the queue is past a low-water mark, where senders' shares are kept."""
        return self._pending > self.low_water or self._pending_bytes > self.low_water_bytes

    def hold(self, reader: Pausable) -> None:
        """Pause `reader` until the queue drains below the low-water mark."""
        reader.pause_reading()
        self._held.add(reader)
        self._metrics.paused.set(len(self._held))

    def release(self, reader: Pausable) -> None:
        """Forget `reader` (its connection closed)."""
        self._held.discard(reader)
        self._metrics.paused.set(len(self._held))

    async def drained(self) -> None:
        """Wait until everything submitted so far has been committed."""
        await self._drained.wait()

    async def wait_for_room(self) -> None:
        """Wait until the queue is below high water: back-pressure for file imports."""
        await self._room.wait()

    async def _run(self) -> None:
        deriver = self._deriver
        await deriver.start()
        while True:
            if not self._chunks:
                if deriver.catch_up_due and (self._finish_deriving or not self._stopping):
                    # Storing comes first: the deriver catches up when it says, storing what
                    # arrives meanwhile, then look again.
                    wait = deriver.catch_up_wait(self._last_submit)
                    if not self._stopping and wait > 0 and await self._more_within(wait):
                        continue
                    await deriver.catch_up(self._last_submit, whole_run=self._stopping)
                    continue
                if self._stopping:
                    return
                self._ready.clear()
                await self._ready.wait()
                continue
            if self._pending < self.batch_size and self.linger and not self._stopping:
                # Let a small batch fill a little: fewer, larger transactions.
                await asyncio.sleep(self.linger)
            defer = deriver.defers(self._pending)
            # Parsing the next batch while this one commits was measured and bought nothing:
            # sqlite3 takes the GIL back for every row and statement, so the database thread
            # waited on the parser as much as it ran beside it.
            self._inflight = self._take()
            self._settled = 0
            await self._commit(await self._prepare(self._inflight, find=not defer), defer)
            self._inflight = []

    def _take(self) -> list[Chunk]:
        taken: list[Chunk] = []
        count = 0
        while self._chunks and count < self.batch_size:
            chunk = self._chunks.popleft()
            taken.append(chunk)
            count += len(chunk[2])
        return taken

    async def _prepare(self, chunks: list[Chunk], find: bool) -> list[PreparedChunk]:
        prepared = []
        since_yield = 0
        for chunk in chunks:
            prepared.append(prepare_chunk(*chunk, find=find))
            since_yield += len(chunk[2])
            if since_yield >= YIELD_EVERY:
                # Let the sockets be read now and then; not after every chunk, which a TLS
                # connection delivers a record (some 30 frames) at a time.
                await asyncio.sleep(0)
                since_yield = 0
        return prepared

    def stalled(self) -> str | None:
        """Why messages are waiting for a commit, once none has come for `HEALTH_GRACE`
        seconds while some were queued; None while the writer keeps up or has nothing to do."""
        if not self._pending:
            return None
        waited = time.monotonic() - max(self._last_commit, self._waiting_since)
        if waited < HEALTH_GRACE:
            return None
        why = self._failure or "a commit has not finished"
        return f"no commit for {waited:.0f}s with {self._pending} messages queued: {why}"

    async def _commit(self, chunks: list[PreparedChunk], defer: bool) -> None:
        queued = sum(len(chunk.frames) for chunk in chunks)
        await self._commit_isolating(chunks, defer)
        self._pending -= queued
        for chunk in chunks:
            size = _size(chunk.frames)
            self._pending_bytes -= size
            self._shares.remove(chunk.origin, len(chunk.frames), size)
        if not self._pending:
            self._drained.set()
        self._metrics.queue.set(self._pending)
        self._metrics.queue_bytes.set(self._pending_bytes)
        if self._unspilled:
            # Spilled messages were queued first: once as many have committed, all have.
            self._unspilled = max(0, self._unspilled - queued)
            if not self._unspilled:
                self.spill_path.unlink(missing_ok=True)
                log.info("the messages spilled by an earlier stop are stored")
        self._relieve()

    async def _commit_isolating(self, chunks: list[PreparedChunk], defer: bool) -> None:
        """Commit `chunks`; if the database refuses them, halve them until the refused
        messages are alone, store each of those raw with the reason, and quarantine it to a
        file if even that is refused. Ends once every message is stored or quarantined."""
        refusal = await self._try_commit(chunks, defer)
        if refusal is None:
            return
        count = sum(len(chunk.frames) for chunk in chunks)
        if count > 1:
            log.warning(
                "the database refused a batch of %d messages (%s); halving it",
                count,
                _reason(refusal),
            )
            for half in _halves(chunks, count):
                await self._commit_isolating(half, defer)
            return
        if count == 0:
            log.error("the database refused an empty batch: %s", _reason(refusal))
            return
        (chunk,) = chunks
        log.warning("the database refused a message; storing it raw: %s", _reason(refusal))
        refusal = await self._try_commit([_as_raw(chunk, refusal)], defer=False)
        if refusal is not None:
            self._quarantine(chunk, refusal)

    async def _try_commit(self, chunks: list[PreparedChunk], defer: bool) -> Exception | None:
        """Commit `chunks` in one transaction, retrying while the database fails (the
        readers stay paused meanwhile, so memory stays bounded and nothing read is given up
        while the process lives); the error if the database refuses the rows themselves."""
        started = time.perf_counter()
        delay = 0.1
        while True:
            try:
                async with self._engine.begin() as conn:
                    batch, duplicates, found = await self._store(conn, chunks)
                    derived = await self._deriver.store(conn, batch.ids, found, defer, batch.calls)
                break
            except Exception as exc:
                self._deriver.rolled_back()
                if refused(exc):
                    return exc
                self._metrics.write_errors.inc()
                self._failure = _reason(exc)
                queued = sum(len(chunk.frames) for chunk in chunks)
                log.exception("commit of %d messages failed; retrying in %.1fs", queued, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._last_commit = time.monotonic()
        self._failure = None
        self._settled += sum(len(chunk.frames) for chunk in chunks)
        self._deriver.committed(
            self._deriver.listed(batch.ids, batch.calls) if defer else batch.ids,
            derived,
            defer,
            copy_of(batch) if defer and self._deriver.takes_copies and batch.ids else None,
        )
        self._count(batch, duplicates, time.perf_counter() - started)
        return None

    def _quarantine(self, chunk: PreparedChunk, refusal: Exception) -> None:
        """Append a message the database refused even raw to the quarantine file; if that
        fails too, log it whole."""
        (frame,) = chunk.frames
        origin = chunk.origin
        line = spill.entry(origin, chunk.received_us, frame, _reason(refusal))
        self._settled += 1
        try:
            spill.append(self.quarantine_path, [line])
        except OSError:
            log.exception("quarantining a refused message failed; it is lost: %r", line)
            self._metrics.dropped.labels(origin.transport, "refused").inc()
            return
        log.error(
            "the database refused a message even raw; quarantined to %s", self.quarantine_path
        )
        self._metrics.quarantined.labels(origin.transport).inc()

    async def _more_within(self, seconds: float) -> bool:
        """Whether frames arrive within `seconds`."""
        self._ready.clear()
        try:
            await asyncio.wait_for(self._ready.wait(), seconds)
        except TimeoutError:
            return bool(self._chunks)
        return True

    def _count(self, batch: Batch, duplicates: Counter[str], seconds: float) -> None:
        metrics = self._metrics
        metrics.batch_seconds.observe(seconds)
        metrics.batch_size.observe(len(batch.rows))
        for transport, tally in batch.transports.items():
            metrics.stored.labels(transport).inc(tally.messages)
            if tally.parse_failures:
                metrics.parse_failures.labels(transport).inc(tally.parse_failures)
            if tally.oversize:
                metrics.oversize.labels(transport).inc(tally.oversize)
            if tally.framing_errors:
                metrics.framing_errors.labels(transport).inc(tally.framing_errors)
        for transport, count in duplicates.items():
            metrics.duplicates.labels(transport).inc(count)

    async def _store(
        self, conn: AsyncConnection, chunks: list[PreparedChunk]
    ) -> tuple[Batch, Counter[str], FoundEvents]:
        """Insert the messages of `chunks`, less lines of files stored before; with the call
        events found in the messages inserted, in order."""
        repository = self._messages(conn)
        duplicates: Counter[str] = Counter()
        batch = Batch(classify=partitioned(conn))
        found = FoundEvents([], [])
        seen: set[bytes] = set()
        digests = [d for chunk in chunks if chunk.digests is not None for d in chunk.digests]
        known = await repository.existing_digests(conn, digests) if digests else set()
        for chunk in chunks:
            chunk_found = chunk.found or FoundEvents.none(len(chunk.frames))
            keep: Sequence[int] = range(len(chunk.frames))
            if chunk.digests is not None:
                fresh: list[int] = []
                for index, digest in enumerate(chunk.digests):
                    if digest in known or digest in seen:
                        duplicates[chunk.origin.transport] += 1
                        continue
                    seen.add(digest)
                    fresh.append(index)
                keep = fresh
            if len(keep) == len(chunk.frames):
                add_frames(
                    batch,
                    chunk.origin,
                    chunk.received_us,
                    chunk.frames,
                    chunk.messages,
                    chunk.stored,
                    chunk.digests,
                )
                found.add(chunk_found)
                continue
            add_frames(
                batch,
                chunk.origin,
                chunk.received_us,
                [chunk.frames[i] for i in keep],
                [chunk.messages[i] for i in keep],
                [chunk.stored[i] for i in keep],
                [chunk.digests[i] for i in keep] if chunk.digests is not None else None,
            )
            found.add(chunk_found, keep)
        batch.ids = await repository.insert_messages(conn, batch.rows, batch.calls)
        await repository.upsert_nodes(conn, batch.nodes)
        batch.count_minute()
        await repository.add_node_minutes(conn, batch.minutes)
        return batch, duplicates, found

    def _messages(self, conn: AsyncConnection) -> MessageRepository:
        if self._repository is None:
            self._repository = MessageRepository.for_connection(conn)
        return self._repository

    def _relieve(self) -> None:
        if self._over_high_water():
            return
        self._room.set()
        below = self._pending <= self.low_water and self._pending_bytes <= self.low_water_bytes
        if not below or not self._held:
            return
        for reader in self._held:
            if not reader.is_closing():
                reader.resume_reading()
        self._held.clear()
        self._metrics.paused.set(0)
        # The senders were quiet because we held them: their quiet starts only now.
        self._last_submit = time.monotonic()


def _size(frames: list[Frame]) -> int:
    """The bytes of `frames`: what queueing them costs beyond a small cost per message."""
    return sum(len(frame.data) for frame in frames)


def refused(exc: Exception) -> bool:
    """Whether the database refused the rows themselves (a value, a constraint: storing them
    again fails again), rather than failed to take any (locked, read-only, full, gone: worth
    retrying)."""
    if isinstance(exc, (IntegrityError, DataError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return False
        causes = (exc.orig, getattr(exc.orig, "__cause__", None))
        if any(isinstance(cause, ValueError) for cause in causes):
            return True  # asyncpg: a value it cannot encode (an int out of range)
        for cause in causes:
            state = getattr(cause, "sqlstate", None)
            if isinstance(state, str):
                # Data exception, integrity constraint violation, program limit exceeded.
                return state[:2] in ("22", "23", "54")
        return isinstance(exc, ProgrammingError)  # SQLite: a value it cannot bind
    # Raised before the driver sent anything: a value Python cannot convert.
    return isinstance(exc, (StatementError, ValueError, OverflowError, TypeError))


def _reason(exc: Exception) -> str:
    """The first line of `exc`, short and storable (no NUL)."""
    text = str(exc).split("\n", 1)[0] or type(exc).__name__
    return text[:300].replace("\x00", NUL_REPLACEMENT)


def _as_raw(chunk: PreparedChunk, refusal: Exception) -> PreparedChunk:
    """A one-message chunk as a raw message, unparsed, with the database's reason."""
    message = SyslogMessage(SyslogFormat.RAW, error=f"refused by the database: {_reason(refusal)}")
    return PreparedChunk(
        chunk.origin, chunk.received_us, chunk.frames, [message], chunk.stored, chunk.digests, None
    )


def _halves(chunks: list[PreparedChunk], count: int) -> tuple[list[PreparedChunk], ...]:
    """`chunks` (holding `count` messages) cut in two by messages."""
    first: list[PreparedChunk] = []
    second: list[PreparedChunk] = []
    left = count // 2
    for chunk in chunks:
        size = len(chunk.frames)
        if left >= size:
            first.append(chunk)
        elif left <= 0:
            second.append(chunk)
        else:
            first.append(_part(chunk, 0, left))
            second.append(_part(chunk, left, size))
        left -= size
    return first, second


def _part(chunk: PreparedChunk, start: int, stop: int) -> PreparedChunk:
    """The messages of `chunk` at positions `start` to `stop` (exclusive)."""
    return PreparedChunk(
        chunk.origin,
        chunk.received_us,
        chunk.frames[start:stop],
        chunk.messages[start:stop],
        chunk.stored[start:stop],
        None if chunk.digests is None else chunk.digests[start:stop],
        None if chunk.found is None else chunk.found.part(start, stop),
    )


def beside_database(engine: AsyncEngine, suffix: str) -> Path:
    """A file beside the SQLite database file (`<database>.<suffix>`); for a database
    elsewhere, in the working directory (`cdrecon.<suffix>`)."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        path = Path(database)
        return path.with_name(f"{path.name}.{suffix}")
    return Path(f"cdrecon.{suffix}")
