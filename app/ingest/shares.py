"""Each sender's share of the batch writer's queue: what keeps one sender from crowding out
the others.

The queue is first come, first stored. Without shares, one sender that sends faster than
the database stores (a UDP flood, a connection of huge frames) fills the queue to its
high-water mark, and then every TCP and TLS sender is held back with it. So, once the queue
is past its low-water marks, a sender holding more than half of it (in messages or in
bytes) while another sender is active (sent in the last `ACTIVE` seconds: a sender whose
messages are all stored still counts) is refused more: the writer holds that connection
alone, or drops that UDP sender's datagrams. A sender alone keeps the whole queue (a node's
burst, a slow database), as before.

A sender is a TCP or TLS connection (what can be held), a UDP host whatever its source port
(a flood gains nothing from many ports), or an imported file. Source addresses of UDP can be
forged: against many forged hosts the allow-list of source networks is the defence.
"""

from __future__ import annotations

from collections import OrderedDict

from .origin import Origin

Sender = tuple[str, str | None, int | None, str | None]

# Seconds a sender counts as active after it last sent. Longer than a normal node's pause
# between messages under load, so a flood cannot take the queue between them.
ACTIVE = 5.0
# At most this many senders are remembered as active (forged UDP hosts cost no more).
MAX_SENDERS = 10_000


def sender(origin: Origin) -> Sender:
    """The sender whose share `origin`'s frames count against."""
    port = None if origin.transport == "udp" else origin.peer_port
    return (origin.transport, origin.peer_host, port, origin.source)


class Shares:
    """Messages and bytes queued per sender, kept by the writer as it queues and commits."""

    def __init__(self) -> None:
        self._queued: dict[Sender, list[int]] = {}  # sender -> [messages, bytes]
        self._messages = 0
        self._bytes = 0
        # sender -> when it last sent, oldest first
        self._seen: OrderedDict[Sender, float] = OrderedDict()
        self._pruned = 0.0

    def add(self, origin: Origin, messages: int, size: int, now: float) -> None:
        """`messages` of `size` bytes from `origin` were queued at `now` (monotonic)."""
        key = sender(origin)
        self._seen[key] = now
        self._seen.move_to_end(key)
        if now - self._pruned >= 1.0 or len(self._seen) > MAX_SENDERS:
            self._prune(now)
        held = self._queued.setdefault(key, [0, 0])
        held[0] += messages
        held[1] += size
        self._messages += messages
        self._bytes += size

    def remove(self, origin: Origin, messages: int, size: int) -> None:
        """`messages` of `size` bytes from `origin` left the queue (committed)."""
        key = sender(origin)
        held = self._queued.get(key)
        if held is None:
            return
        held[0] -= messages
        held[1] -= size
        self._messages -= messages
        self._bytes -= size
        if held[0] <= 0:
            del self._queued[key]

    def _prune(self, now: float) -> None:
        """Forget senders not active any more (oldest first) and any beyond MAX_SENDERS."""
        self._pruned = now
        while self._seen:
            key, seen = self._seen.popitem(last=False)
            if now - seen < ACTIVE and len(self._seen) < MAX_SENDERS:
                self._seen[key] = seen
                self._seen.move_to_end(key, last=False)
                break

    def over_half(self, origin: Origin, now: float, messages: int = 0, size: int = 0) -> bool:
        """Whether `origin`'s sender holds more than half of the queue (in messages or in
        bytes), counting `messages` of `size` bytes it would add, while another sender is
        active."""
        key = sender(origin)
        if now - self._pruned >= 1.0:
            self._prune(now)
        if len(self._seen) - (key in self._seen) < 1:
            return False  # alone
        held = self._queued.get(key, (0, 0))
        mine, mine_bytes = held[0] + messages, held[1] + size
        total, total_bytes = self._messages + messages, self._bytes + size
        return 2 * mine > total or 2 * mine_bytes > total_bytes

    def queued(self) -> tuple[int, int]:
        """Messages and bytes queued, from every sender."""
        return self._messages, self._bytes

    def active(self) -> int:
        """Senders active in the last `ACTIVE` seconds (as of the last prune)."""
        return len(self._seen)
