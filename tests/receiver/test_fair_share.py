"""One sender cannot crowd the others out of the queue (app/ingest/shares.py): past the
low-water mark, a UDP flood beside a TCP sender is refused (its socket not read until the
queue drains), and a connection of huge frames is held alone, while the other sender is
neither held nor loses anything. A real `cdrecon serve` whose database another connection
keeps locked, so nothing leaves the queue while the senders push."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import Service
from tests.receiver.streams import database_locked, send
from tests.receiver.test_queue_bytes import big_frames, handled


def line(node: str, index: int) -> bytes:
    message = b"<134>1 2026-11-26T10:00:00Z %s app - - - %05d" % (node.encode(), index)
    return b"%d %s" % (len(message), message)


@contextmanager
def steady_sender(port: int) -> Iterator[list[int]]:
    """A TCP connection sending a line every 0.2 s until the block ends (a node that keeps
    logging, so it stays an active sender throughout, far under half of the queue); yields
    the count of lines sent."""
    sent = [0]
    stop = threading.Event()

    def run() -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            while not stop.is_set():
                sock.sendall(line("steady-node", sent[0]))
                sent[0] += 1
                stop.wait(0.2)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield sent
    finally:
        stop.set()
        thread.join(timeout=30)


def test_a_udp_flood_is_held_to_half_the_queue_beside_a_tcp_sender(service: Service) -> None:
    low_water, high_water, burst = 300, 1000, 50
    service.env.update(
        CDRECON_QUEUE_HIGH_WATER=str(high_water),
        CDRECON_QUEUE_LOW_WATER=str(low_water),
        CDRECON_BATCH_SIZE="50",
    )
    service.start()
    datagram = b"<13>Mar  2 10:00:00 udp-flood app: flood"
    sent_udp = 0
    with (
        database_locked(service.db_path),
        steady_sender(service.tcp_port) as sent,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        service.wait_for("cdrecon_messages_received_total", 1, transport="tcp")
        # Bursts until the flood is refused its share: then the UDP socket is not read any
        # more (the kernel keeps or drops what follows), so nothing more is handled.
        while service.metric("cdrecon_messages_dropped_total", reason="fair_share") == 0:
            assert sent_udp < 2 * high_water, "the flood was never refused its share"
            for _ in range(burst):
                udp.sendto(datagram, ("127.0.0.1", service.udp_port))
            sent_udp += burst
            handled(service, sent_udp, timeout=5)
        # Before shares, the flood took the queue past its high-water mark (it may grow to
        # 200,000 datagrams) and the TCP sender was held with it.
        admitted = service.metric("cdrecon_messages_received_total", transport="udp")
        assert low_water // 2 < admitted < high_water
        assert service.metric("cdrecon_ingest_queue_messages") < high_water
        assert service.metric("cdrecon_ingest_paused_connections") == 1  # the UDP socket
        # The TCP sender is still read while the flood waits.
        before = service.metric("cdrecon_messages_received_total", transport="tcp")
        read = service.wait_for("cdrecon_messages_received_total", before + 5, transport="tcp")
        assert read >= before + 5
    tcp_lines = sent[0]
    assert service.wait_for("cdrecon_messages_stored_total", tcp_lines, transport="tcp") == (
        tcp_lines
    )
    # Once the queue drained, the socket is read again: the datagrams the kernel kept are
    # stored (its buffer holds them all here), the one refused is counted.
    dropped = service.metric("cdrecon_messages_dropped_total", reason="fair_share")
    stored = service.wait_for("cdrecon_messages_stored_total", sent_udp - dropped, transport="udp")
    assert stored == sent_udp - dropped
    assert service.metric("cdrecon_ingest_paused_connections") == 0


def test_a_udp_sender_alone_keeps_the_whole_queue(service: Service) -> None:
    service.env.update(CDRECON_QUEUE_HIGH_WATER="200", CDRECON_QUEUE_LOW_WATER="50")
    service.start()
    with (
        database_locked(service.db_path),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        for i in range(400):
            udp.sendto(b"<13>Mar  2 10:00:00 udp-node app: %d" % i, ("127.0.0.1", service.udp_port))
            assert handled(service, i + 1) == i + 1
        # A node's burst into a slow database: past both marks, nothing dropped.
        assert service.metric("cdrecon_messages_dropped_total") == 0
    assert service.wait_for("cdrecon_messages_stored_total", 400) == 400


def test_a_connection_of_huge_frames_is_held_alone(service: Service) -> None:
    high_water = 4 * 1024 * 1024
    service.env.update(
        CDRECON_QUEUE_HIGH_WATER_BYTES=str(high_water),
        CDRECON_QUEUE_LOW_WATER_BYTES=str(high_water // 8),
    )
    service.start()
    hog_frames = 120  # 7.7 MB: more than the queue may hold
    with database_locked(service.db_path), steady_sender(service.tcp_port) as sent:
        service.wait_for("cdrecon_messages_received_total", 1, transport="tcp")
        hog = threading.Thread(
            target=send, args=(service.tcp_port, big_frames(hog_frames, 0)), daemon=True
        )
        hog.start()
        assert service.wait_for("cdrecon_ingest_paused_connections", 1) == 1
        # The hog is held past the low mark, far below the high one, and the steady sender
        # is still read: its lines keep arriving while the hog waits.
        assert service.metric("cdrecon_ingest_queue_bytes") < high_water
        before = service.metric("cdrecon_messages_received_total", transport="tcp")
        read = service.wait_for("cdrecon_messages_received_total", before + 5, transport="tcp")
        assert read >= before + 5
        assert service.metric("cdrecon_ingest_paused_connections") == 1
    hog.join(timeout=60)
    total = hog_frames + sent[0]
    assert service.wait_for("cdrecon_messages_stored_total", total) == total
