"""The receive queue is bounded in bytes: large frames stop the readers (TCP) or are dropped
and counted (UDP) once the queue holds the configured bytes, however few messages that is.
A real `cdrecon serve` whose database another connection keeps locked, so nothing leaves
the queue while the senders push."""

from __future__ import annotations

import socket
import threading
import time

from tests.conftest import Service
from tests.receiver.streams import database_locked, send

FRAME = 64_000  # bytes of each message: Pexip lines are ~500, a hostile sender's are not
# asyncio reads a socket 256 KiB at a time; the frames one read completes may have begun in
# earlier reads: what one connection can add after the mark, before it is paused.
OVERSHOOT = 256 * 1024 + FRAME


def big_frames(count: int, sender: int) -> bytes:
    """`count` octet-counted messages of `FRAME` bytes each."""
    parts = []
    for i in range(count):
        head = b"<134>1 2026-11-26T10:00:00.000Z big-%d pexip - - - %06d " % (sender, i)
        message = head + b"x" * (FRAME - len(head))
        parts.append(b"%d %s" % (len(message), message))
    return b"".join(parts)


def test_four_senders_of_large_frames_stop_at_the_byte_high_water(service: Service) -> None:
    high_water = 2 * 1024 * 1024
    service.env.update(
        CDRECON_QUEUE_HIGH_WATER_BYTES=str(high_water),
        CDRECON_QUEUE_LOW_WATER_BYTES=str(high_water // 4),
    )
    service.start()
    senders, per_sender = 4, 80  # 5 MB each: more than the queue may hold, from every sender
    threads = [
        threading.Thread(target=send, args=(service.tcp_port, big_frames(per_sender, s)))
        for s in range(senders)
    ]
    with database_locked(service.db_path):
        for thread in threads:
            thread.start()
        # Every sender still has bytes to send, so each is read until the writer holds it.
        paused = service.wait_for("cdrecon_ingest_paused_connections", senders, timeout=60)
        queued = service.metric("cdrecon_ingest_queue_bytes")
        assert paused == senders, (paused, queued)
        assert high_water <= queued <= high_water + senders * OVERSHOOT
        # The message mark (20,000 by default) is far away: the bytes stopped them.
        assert service.metric("cdrecon_ingest_queue_messages") < 100
        assert service.metric("cdrecon_messages_stored_total") == 0
    for thread in threads:
        thread.join(timeout=60)
    total = senders * per_sender
    assert service.wait_for("cdrecon_messages_stored_total", total) == total
    assert service.metric("cdrecon_ingest_queue_bytes") == 0
    assert service.metric("cdrecon_ingest_paused_connections") == 0


def handled(service: Service, target: int, timeout: float = 30.0) -> float:
    """UDP datagrams read (queued or dropped), once `target` have been or at the timeout."""
    names = "cdrecon_messages_received_total", "cdrecon_messages_dropped_total"
    deadline = time.monotonic() + timeout
    while True:
        count = sum(service.metric(name, transport="udp") for name in names)
        if count >= target or time.monotonic() > deadline:
            return count
        time.sleep(0.005)


def test_udp_past_the_byte_limit_is_dropped_and_counted(service: Service) -> None:
    limit, size, count = 1024 * 1024, 60_000, 20
    service.env.update(
        CDRECON_QUEUE_HIGH_WATER_BYTES=str(limit // 2), CDRECON_QUEUE_UDP_LIMIT_BYTES=str(limit)
    )
    service.start()
    fits = limit // size  # datagrams the queue takes before the limit
    with (
        database_locked(service.db_path),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        for i in range(count):
            head = b"<13>Mar  2 10:00:00 big app: %06d " % i
            udp.sendto(head + b"x" * (size - len(head)), ("127.0.0.1", service.udp_port))
            # One at a time, each read before the next: no datagram is left to the kernel.
            assert handled(service, i + 1) == i + 1
        assert service.metric("cdrecon_messages_received_total", transport="udp") == fits
        assert service.metric("cdrecon_ingest_queue_bytes") == fits * size <= limit
        dropped = service.metric("cdrecon_messages_dropped_total", reason="queue_full")
        assert dropped == count - fits
    assert service.wait_for("cdrecon_messages_stored_total", fits) == fits


def test_udp_does_not_take_the_room_that_held_senders_wait_for(service: Service) -> None:
    service.env.update(
        CDRECON_QUEUE_HIGH_WATER="200", CDRECON_QUEUE_LOW_WATER="50", CDRECON_BATCH_SIZE="50"
    )
    service.start()
    lines = b"".join(
        b"%d %s" % (len(m), m)
        for m in (b"<134>1 2026-11-26T10:00:00Z tcp-node app - - - %05d" % i for i in range(2000))
    )
    datagram = b"<13>Mar  2 10:00:00 udp-node app: flood"
    sender = threading.Thread(target=send, args=(service.tcp_port, lines))
    with (
        database_locked(service.db_path),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        sender.start()
        assert service.wait_for("cdrecon_ingest_paused_connections", 1) == 1
        # Far below the UDP limit (200,000), yet above the mark where the TCP sender resumes.
        for i in range(5):
            udp.sendto(datagram, ("127.0.0.1", service.udp_port))
            assert handled(service, i + 1) == i + 1
        assert service.metric("cdrecon_messages_dropped_total", reason="queue_full") == 5
    sender.join(timeout=60)
    assert service.wait_for("cdrecon_messages_stored_total", 2000, transport="tcp") == 2000
    # With nobody held, UDP has the whole queue again.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(datagram, ("127.0.0.1", service.udp_port))
    assert service.wait_for("cdrecon_messages_stored_total", 1, transport="udp") == 1
