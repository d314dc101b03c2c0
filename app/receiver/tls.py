"""TLS for the syslog listener (RFC 5425): server context, client identity, allow-list."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from app.config import StartupError


def _pem(path: Path, what: str, setting: str, marker: str) -> None:
    """Refuse, in one line that names the file and the setting, a file that is missing,
    unreadable or not PEM, before OpenSSL answers with a bare `PEM lib`."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise StartupError(
            f"cannot read the {what} {path} ({setting}): {exc.strerror or exc}"
        ) from exc
    if b"-----BEGIN " not in text or marker.encode() not in text:
        raise StartupError(
            f"the {what} {path} ({setting}) is not PEM: expected a '-----BEGIN {marker}' block"
        )


def server_context(cert: Path, key: Path | None, client_ca: Path | None) -> ssl.SSLContext:
    """A server-side context; with `client_ca`, clients must present a certificate it signed.
    A missing, unreadable or non-PEM file, or a key that does not match the certificate, is
    a `StartupError`."""
    _pem(cert, "TLS certificate", "CDRECON_TLS_CERT", "CERTIFICATE")
    if key is not None:
        _pem(key, "TLS key", "CDRECON_TLS_KEY", "PRIVATE KEY")
    if client_ca is not None:
        _pem(client_ca, "client CA", "CDRECON_TLS_CLIENT_CA", "CERTIFICATE")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Many syslog senders (loggen among them) close without a TLS close_notify. asyncio
    # treats that as a fatal error and throws away the records it decrypted in the same
    # read, losing the tail of the stream; as a plain EOF, every record is delivered.
    context.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    # No TLS 1.3 session tickets: a sender never reads them, and a socket closed with
    # unread data in it sends a reset, which makes our kernel discard what it had received
    # and we had not read yet. Syslog senders reconnect rarely; resumption buys nothing.
    context.num_tickets = 0
    try:
        context.load_cert_chain(str(cert), str(key) if key else None)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or exc.reason == "KEY_VALUES_MISMATCH":
            raise StartupError(
                f"the TLS key {key} does not match the certificate {cert} "
                "(CDRECON_TLS_KEY, CDRECON_TLS_CERT): give the key the certificate was made for"
            ) from exc
        raise StartupError(
            f"cannot load the TLS certificate {cert} and key {key or cert} "
            f"(CDRECON_TLS_CERT, CDRECON_TLS_KEY): {exc.reason or exc}"
        ) from exc
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except ssl.SSLError as exc:
            raise StartupError(
                f"cannot load the client CA {client_ca} (CDRECON_TLS_CLIENT_CA): "
                f"{exc.reason or exc}"
            ) from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context


# The attribute names of RFC 4514, as `ssl` spells them out in full.
_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "domainComponent": "DC",
}


def certificate_subject(peercert: dict[str, Any] | None) -> str | None:
    """The certificate subject as `CN=…,OU=…,O=…`, in certificate order."""
    if not peercert:
        return None
    parts = [
        f"{_SHORT_NAMES.get(key, key)}={value}"
        for rdn in peercert.get("subject", ())
        for key, value in rdn
    ]
    return ",".join(parts) or None


def certificate_names(peercert: dict[str, Any] | None) -> set[str]:
    """Names a certificate vouches for: its common names and DNS/IP subject alternative names."""
    if not peercert:
        return set()
    names = {
        str(value).lower()
        for rdn in peercert.get("subject", ())
        for key, value in rdn
        if key == "commonName"
    }
    names.update(
        str(value).lower()
        for kind, value in peercert.get("subjectAltName", ())
        if kind in ("DNS", "IP Address")
    )
    return names


def peer_allowed(peercert: dict[str, Any] | None, allowed: frozenset[str]) -> bool:
    """True when no allow-list is set, or the certificate names one of its entries."""
    return not allowed or bool(certificate_names(peercert) & allowed)
