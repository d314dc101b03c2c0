"""The alert webhook: a signed JSON POST per alert change, retried with backoff.

The receiver checks `X-Cdrecon-Signature: sha256=<hex>`, the HMAC-SHA256 under the shared
secret of the `X-Cdrecon-Timestamp` header, a dot and the body's bytes, and refuses an old
timestamp, so that a captured request cannot be replayed later.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Cdrecon-Signature"
TIMESTAMP_HEADER = "X-Cdrecon-Timestamp"
# Statuses worth another try: the receiver may be restarting or shedding load.
_RETRY = frozenset({408, 425, 429, 500, 502, 503, 504})


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance: float = 300.0,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    now = time.time() if now is None else now
    if abs(now - sent) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def where(url: str) -> str:
    """The receiver as the log names it: scheme, host and port only, since many receivers
    carry a token in the path or query."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def body(event: str, alert: dict[str, Any], added: int = 0) -> bytes:
    """The JSON the webhook posts for one alert change."""
    payload = {"event": f"alert.{event}", "added": added, "alert": alert}
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Webhook:
    """Where alert changes are posted, and how hard to try."""

    url: str
    secret: bytes | None = field(default=None, repr=False)
    attempts: int = 5
    backoff: float = 1.0
    timeout: float = 10.0

    async def deliver(self, content: bytes) -> bool:
        """POST `content`, retrying what may pass (connection trouble, 5xx, 429) with
        doubling delays; True once the receiver answered 2xx."""
        delay = self.backoff
        receiver = where(self.url)
        async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
            for attempt in range(1, self.attempts + 1):
                # Signed afresh each attempt: the receiver refuses an old timestamp.
                stamp = str(int(time.time()))
                headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp}
                if self.secret is not None:
                    headers[SIGNATURE_HEADER] = signature(self.secret, stamp, content)
                try:
                    response = await client.post(self.url, content=content, headers=headers)
                except httpx.HTTPError as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                else:
                    if response.is_success:
                        return True
                    reason = f"HTTP {response.status_code}"
                    if response.status_code not in _RETRY:
                        log.error("alert webhook %s refused the alert: %s", receiver, reason)
                        return False
                if attempt < self.attempts:
                    log.warning(
                        "alert webhook %s failed (%s); retrying in %.1fs", receiver, reason, delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60.0)
        log.error(
            "alert webhook %s failed %d times; giving up: %s", receiver, self.attempts, reason
        )
        return False
