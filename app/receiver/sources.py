"""The allow-list of source networks for plain TCP and UDP syslog (CDRECON_SYSLOG_ALLOW)."""

from __future__ import annotations

import ipaddress
import logging

from app.config import Network

from .logging_limit import LimitedLog

log = logging.getLogger(__name__)
_refusals = LimitedLog(log)

# Senders are a few nodes; the bound only guards against a flood of forged sources.
_CACHE_LIMIT = 10000


class SourceFilter:
    """Answers whether a peer address may send, remembering the answer per address so that
    a datagram costs one dictionary lookup (and a refused address is logged once)."""

    def __init__(self, networks: tuple[Network, ...]) -> None:
        self._networks = networks
        self._seen: dict[str, bool] = {}

    @property
    def open(self) -> bool:
        """True when no allow-list is set: everyone may send."""
        return not self._networks

    def allows(self, host: str) -> bool:
        """True when `host` is inside one of the networks (or there are none)."""
        if not self._networks:
            return True
        allowed = self._seen.get(host)
        if allowed is None:
            if len(self._seen) >= _CACHE_LIMIT:
                self._seen.clear()
            allowed = self._seen[host] = self._inside(host)
            if not allowed:
                _refusals.warning("syslog from %s refused: not in CDRECON_SYSLOG_ALLOW", host)
        return allowed

    def _inside(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        # A dual-stack listener sees IPv4 senders as ::ffff:a.b.c.d.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)
