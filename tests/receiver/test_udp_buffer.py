"""The UDP receive buffer and the datagrams the kernel dropped: a real `cdrecon serve`
stopped (SIGSTOP) while a burst arrives, so its socket's buffer overflows."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.conftest import Service

LINE = b"<13>Mar  2 10:00:00 conf-a app: " + b"x" * 200
BURST = 2000


def test_datagrams_the_kernel_dropped_are_counted(service: Service) -> None:
    service.env["CDRECON_UDP_RECEIVE_BUFFER"] = "65536"
    service.start()
    assert 0 < service.metric("cdrecon_udp_receive_buffer_bytes") <= 65536
    assert service.metric("cdrecon_udp_kernel_drops_total") == 0
    assert service.process is not None
    service.process.send_signal(signal.SIGSTOP)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for _ in range(BURST):
                udp.sendto(LINE, ("127.0.0.1", service.udp_port))
    finally:
        service.process.send_signal(signal.SIGCONT)
    drops = service.metric("cdrecon_udp_kernel_drops_total")
    assert 0 < drops < BURST
    # Every datagram sent was either read or counted as dropped.
    received = service.wait_for("cdrecon_messages_received_total", BURST - drops, timeout=30)
    assert received + drops == BURST


def test_a_buffer_the_kernel_refuses_is_named_in_the_log(service: Service) -> None:
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    service.env["CDRECON_UDP_RECEIVE_BUFFER"] = str(rmem_max * 4)
    service.start()
    assert service.metric("cdrecon_udp_receive_buffer_bytes") == rmem_max
    assert "net.core.rmem_max" in service.log
    assert "CDRECON_UDP_RECEIVE_BUFFER" in service.log
