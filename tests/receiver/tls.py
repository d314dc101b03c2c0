"""A TLS-serving `cdrecon serve` and TLS clients with certificates from a throw-away CA."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import trustme

from tests.conftest import Service


def tls_service(service: Service, ca: trustme.CA, tmp_path: Path, allowed: str = "") -> None:
    """Start `service` with a TLS listener whose clients need a certificate from `ca`."""
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    service.env.update(
        CDRECON_TLS_CERT=str(tmp_path / "server.pem"),
        CDRECON_TLS_CLIENT_CA=str(tmp_path / "ca.pem"),
        CDRECON_TLS_ALLOWED_PEERS=allowed,
    )
    service.start()


def tls_client(ca: trustme.CA, tmp_path: Path, name: str | None) -> ssl.SSLContext:
    """A client context trusting `ca`; with `name`, presenting a certificate for it."""
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    if name is not None:
        cert = ca.issue_cert(name, common_name=name)
        cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / f"{name}.pem"))
        context.load_cert_chain(str(tmp_path / f"{name}.pem"))
    return context


def send_tls(service: Service, context: ssl.SSLContext, payload: bytes) -> None:
    """Send `payload` over one TLS connection and close it cleanly."""
    with (
        socket.create_connection(("127.0.0.1", service.tls_port)) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(payload)
        sock.unwrap()
