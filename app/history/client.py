"""Read call history from a Management Node's REST API, page by page, gently.

The MN serves its history as Tastypie list resources under `/api/admin/history/v1/`: each
response is an envelope `{"meta": {..., "next": ..., "total_count": N}, "objects": [...]}` whose
`meta.next` is a relative path (with every query parameter of the request, offset advanced) or
null on the last page. `HistoryClient.pages` follows those links and yields each page's objects;
`HistoryClient.page` fetches one page and hands back its link, for callers that page by keyset.
Turning objects into MN records and storing them is the history service's job, not this one's.

The MN is a production box that also runs the admin UI, so the client is deliberately polite:
one request at a time per `pages` call, a global request rate limit, and bounded retries with
exponential backoff for trouble that may pass (5xx, 429, timeouts, dropped connections). Trouble
that will not pass by waiting (wrong password, missing permission, wrong URL, an untrusted
certificate, a body that is not an envelope) raises `MNError` on the first response.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self, get_args
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)

API_ROOT: Final = "/api/admin/history/v1/"
# The MN accepts more, but 1000 objects (participants carry their media streams) is already a
# response of a few megabytes that the MN has to render in one go.
MAX_PAGE_SIZE: Final = 1000
# Backoff never grows past this, however many retries are allowed.
MAX_BACKOFF: Final = 30.0
# A Retry-After longer than this is the MN saying "not now": give up and let the next run retry,
# rather than hold a run (and its caller) for minutes.
MAX_RETRY_AFTER: Final = 300.0

Resource = Literal["participant", "conference"]
_RESOURCES: Final = frozenset(get_args(Resource))
# Query parameters the client owns; a filter of the same name would break paging.
_RESERVED_PARAMS: Final = frozenset({"format", "limit", "offset"})
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_BODY_SNIPPET = 200
_USER_AGENT: Final = "cdrecon-history-client"


class MNError(Exception):
    """The MN could not be read: a refused request, a bad reply, or retries exhausted."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        self.url = url
        self.reason = reason
        self.status = status
        super().__init__(f"{url}: {reason}")


@dataclass(frozen=True, slots=True)
class MNConnection:
    """How to reach one Management Node's history API, and how hard to lean on it."""

    url: str
    """Base URL such as `https://mn.example.com`; the API path is added to it."""
    username: str
    password: str = field(repr=False)
    ca_bundle: Path | None = None
    """Verify the MN's certificate against this CA file; None uses the system trust store."""
    verify_tls: bool = True
    page_size: int = MAX_PAGE_SIZE
    """Tastypie `limit`; values above MAX_PAGE_SIZE are lowered to it."""
    timeout: float = 30.0
    """Seconds allowed to connect, and for each read/write of one request (see `HistoryClient`)."""
    max_retries: int = 5
    """Retries per request after the first attempt, for 5xx, 429, timeouts and lost connections."""
    backoff: float = 0.5
    """First retry delay in seconds; doubles each retry, jittered, capped at MAX_BACKOFF."""
    requests_per_second: float = 5.0
    """Upper bound on request starts, retries included; `math.inf` disables the limit."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"MN url must be http(s)://host[:port], got {self.url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"MN url must not carry a query or fragment, got {self.url!r}")
        if self.ca_bundle is not None and not self.verify_tls:
            raise ValueError("a CA bundle is given but TLS verification is turned off")
        if self.page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {self.page_size}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {self.max_retries}")
        if not self.backoff >= 0:
            raise ValueError(f"backoff must not be negative, got {self.backoff}")
        if not self.requests_per_second > 0:
            raise ValueError(
                f"requests_per_second must be positive, got {self.requests_per_second}"
            )


def format_mn_time(moment: datetime) -> str:
    """`moment` the way the MN writes and filters times: UTC, microseconds, no zone suffix.

    A naive datetime is taken to be UTC already, as every time the MN hands out is.
    """
    # isoformat, not strftime: strftime's %Y does not zero-pad years below 1000 on glibc.
    return _naive_utc(moment).isoformat(timespec="microseconds")


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


class HistoryClient:
    """Pages through MN history resources over one pooled HTTPS connection.

    Use as `async with HistoryClient(connection) as client:`; the context owns the HTTP client.

    Behaviour per request (the first page or a `meta.next` link):

    - Rate limit: request starts, retries included, are spaced at least 1/requests_per_second
      apart across everything this client sends, so several concurrent `pages` calls share it.
    - Timeout: `timeout` bounds connecting, waiting for a pooled connection, and each socket
      read or write. The MN renders a whole page before it sends a byte, so in practice it is
      the time allowed to the first byte of the reply.
    - Retries: up to `max_retries` more attempts on 429/500/502/503/504, timeouts, refused or
      dropped connections and malformed HTTP; the n-th retry waits backoff * 2**(n-1), jittered
      down by up to half and capped at MAX_BACKOFF, or the Retry-After the MN asked for if
      longer. Any other status, a TLS verification failure, or a body that is not a Tastypie
      envelope raises MNError at once: waiting does not fix a wrong password.

    Counters for the caller's metrics and logs: `requests` (HTTP requests sent), `retries`
    (of those, repeats), `records` (objects yielded) and `total_count` (the MN's
    `meta.total_count` on the latest page).
    """

    def __init__(
        self, connection: MNConnection, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.connection = connection
        self.requests = 0
        self.retries = 0
        self.records = 0
        self.total_count: int | None = None
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._page_size = min(connection.page_size, MAX_PAGE_SIZE)
        self._interval = 1.0 / connection.requests_per_second
        # Loop time before which the next request may not start (the rate limit's state).
        self._next_start = 0.0

    async def __aenter__(self) -> Self:
        if self._client is not None:
            raise RuntimeError("HistoryClient is already open")
        self._client = httpx.AsyncClient(
            base_url=self.connection.url,
            auth=httpx.BasicAuth(self.connection.username, self.connection.password),
            verify=self._tls_verification(),
            timeout=httpx.Timeout(self.connection.timeout),
            headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
            # A redirect means a wrong URL or a login page in front of the API: report it
            # rather than send the credentials on to wherever it points.
            follow_redirects=False,
            # Settings come from MNConnection only, never from proxy or SSL_* variables.
            trust_env=False,
            transport=self._transport,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def pages(
        self, resource: Resource, filters: Mapping[str, str]
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield the objects of each page of `resource` matching `filters`, first page first.

        `filters` are Tastypie query parameters (`end_time__gte`, `order_by`, ...). Paging is
        by offset, so pass an `order_by` that new records sort after (the MN appends history
        when a call ends, hence `end_time`); otherwise records written while paging can shift
        others across a page boundary. Records deleted while paging (the MN's retention purge
        removes the oldest) shift the rest back all the same; `page` lets a caller avoid that.
        """
        link: str | None = None
        followed: set[str] = set()
        while True:
            objects, link = await self.page(resource, filters, link)
            yield objects
            if link is None:
                return
            # A link already followed would never end.
            if link in followed:
                raise MNError(
                    self._absolute(self._first_target(resource, filters)),
                    f"paging does not advance (meta.next {link!r})",
                )
            followed.add(link)

    async def page(
        self, resource: Resource, filters: Mapping[str, str], next_link: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of `resource` matching `filters`: its objects and its `meta.next`.

        Without `next_link` this is the first page (offset 0) of the query; with it, the page
        that `meta.next` link, got from an earlier page of the same query, points at. A caller
        that restarts the query from the last value it has seen (keyset paging) uses the first
        form and follows links only where the value does not advance. The same retries, rate
        limit and checks apply as in `pages`, which is this in a loop.
        """
        target = self._first_target(resource, filters)
        if next_link is not None:
            first = target
            target = self._next_target(first, resource, next_link)
            if target == first:
                raise MNError(
                    self._absolute(target), f"paging does not advance (meta.next {next_link!r})"
                )
        objects, following = await self._fetch_page(target)
        self.records += len(objects)
        # An empty page that claims more would have the caller ask forever.
        if following is not None and not objects:
            raise MNError(
                self._absolute(target), f"paging does not advance (meta.next {following!r})"
            )
        return objects, following

    @staticmethod
    def window_filters(
        field: str, since: datetime | None, until: datetime | None
    ) -> dict[str, str]:
        """Filters selecting `since <= field < until` (either end open when None).

        Half-open so that consecutive windows neither overlap nor leave gaps. Times are written
        as the MN writes them (see `format_mn_time`); naive datetimes are taken as UTC.
        """
        if not field.isidentifier():
            raise ValueError(f"not a field name: {field!r}")
        # Compared as naive UTC: an aware and a naive datetime cannot be compared directly.
        if since is not None and until is not None and _naive_utc(since) > _naive_utc(until):
            raise ValueError(f"window starts after it ends: {since} > {until}")
        filters: dict[str, str] = {}
        if since is not None:
            filters[f"{field}__gte"] = format_mn_time(since)
        if until is not None:
            filters[f"{field}__lt"] = format_mn_time(until)
        return filters

    # -- one request ----------------------------------------------------------------------

    async def _fetch_page(self, target: httpx.URL) -> tuple[list[dict[str, Any]], str | None]:
        """GET one page, retrying what may pass; returns its objects and `meta.next`."""
        client = self._open_client()
        url = self._absolute(target)
        attempt = 0
        while True:
            await self._wait_for_turn()
            self.requests += 1
            retry_after: float | None = None
            failure: Exception | None = None
            status: int | None = None
            try:
                response = await client.get(target)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if _is_tls_refusal(exc):
                    raise MNError(url, f"TLS handshake failed: {_describe(exc)}") from exc
                failure = exc
                reason = _describe(exc)
            except httpx.HTTPError as exc:
                # Proxy errors, unsupported schemes, bad URLs: not something time will fix.
                raise MNError(url, _describe(exc)) from exc
            else:
                if response.is_success:
                    return self._envelope(url, response)
                status = response.status_code
                reason = f"HTTP {status} {response.reason_phrase}".rstrip()
                if status not in _RETRY_STATUSES:
                    raise MNError(url, _refusal(response, reason), status)
                retry_after = _retry_after(response)
                if retry_after is not None and retry_after > MAX_RETRY_AFTER:
                    raise MNError(url, f"{reason}, Retry-After {retry_after:.0f} s", status)

            if attempt >= self.connection.max_retries:
                raise MNError(
                    url, f"gave up after {attempt + 1} attempt(s); last: {reason}", status
                ) from failure
            delay = self._backoff(attempt, retry_after)
            attempt += 1
            self.retries += 1
            log.warning(
                "MN history %s: %s; retry %d of %d in %.2f s",
                url,
                reason,
                attempt,
                self.connection.max_retries,
                delay,
            )
            await asyncio.sleep(delay)

    def _envelope(
        self, url: str, response: httpx.Response
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The objects and `meta.next` of a Tastypie list envelope, or MNError."""
        try:
            body = response.json()
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            raise MNError(
                url,
                f"reply is not JSON (Content-Type {response.headers.get('content-type')!r}): "
                f"{_snippet(response)}",
                response.status_code,
            ) from None
        meta = body.get("meta") if isinstance(body, dict) else None
        objects = body.get("objects") if isinstance(body, dict) else None
        next_link = meta.get("next") if isinstance(meta, dict) else None
        if (
            not isinstance(meta, dict)
            or "next" not in meta
            or not isinstance(next_link, str | None)
            or not isinstance(objects, list)
            or not all(isinstance(item, dict) for item in objects)
        ):
            raise MNError(url, f"reply is not a Tastypie list envelope: {_snippet(response)}", 200)
        total_count = meta.get("total_count")
        if isinstance(total_count, int):
            self.total_count = total_count
        return objects, next_link

    def _first_target(self, resource: Resource, filters: Mapping[str, str]) -> httpx.URL:
        """The request for the first page of `resource` matching `filters`."""
        if resource not in _RESOURCES:
            raise ValueError(f"unknown history resource {resource!r}")
        clash = _RESERVED_PARAMS & filters.keys()
        if clash:
            raise ValueError(f"filters must not set {sorted(clash)}: the client sets them")
        params = {"format": "json", "limit": str(self._page_size), **filters}
        return httpx.URL(f"{API_ROOT}{resource}/", params=params)

    def _next_target(self, current: httpx.URL, resource: Resource, next_link: str) -> httpx.URL:
        """The request for `meta.next`: its path and query, on our own base URL.

        The MN sends a path relative to its host. Only its path and query are used, even from
        an absolute link, so scheme, host, port, TLS settings and credentials stay ours; and the
        path must be the resource we asked for, so a link cannot send the credentials elsewhere.
        """
        link = urlsplit(next_link)
        if link.path != f"{API_ROOT}{resource}/":
            raise MNError(
                self._absolute(current), f"meta.next leaves the {resource} list: {next_link!r}"
            )
        return httpx.URL(f"{link.path}?{link.query}" if link.query else link.path)

    # -- plumbing -------------------------------------------------------------------------

    def _open_client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("use HistoryClient inside `async with`")
        return self._client

    def _absolute(self, target: httpx.URL) -> str:
        """`target` as a full URL for messages (never carries credentials)."""
        return str(self._open_client().build_request("GET", target).url)

    async def _wait_for_turn(self) -> None:
        """Sleep until this request may start under the rate limit, and book the next slot."""
        now = asyncio.get_running_loop().time()
        # Booking before sleeping (no await in between) keeps concurrent callers in line.
        start = max(now, self._next_start)
        self._next_start = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry number `attempt + 1`."""
        ceiling = min(MAX_BACKOFF, self.connection.backoff * 2.0 ** min(attempt, 32))
        # Jitter so that clients that failed together do not all come back together.
        delay = ceiling * random.uniform(0.5, 1.0)
        return max(delay, retry_after) if retry_after is not None else delay

    def _tls_verification(self) -> ssl.SSLContext | bool:
        if not self.connection.verify_tls:
            return False
        try:
            if self.connection.ca_bundle is not None:
                return ssl.create_default_context(cafile=str(self.connection.ca_bundle))
            return ssl.create_default_context()
        except (OSError, ssl.SSLError) as exc:
            raise MNError(
                self.connection.url, f"cannot load CA bundle {self.connection.ca_bundle}: {exc}"
            ) from exc


def _is_tls_refusal(exc: BaseException) -> bool:
    """True when a TLS failure is one that retrying cannot fix (untrusted certificate, wrong
    name, no common protocol, plain HTTP on the port); an EOF mid-handshake may pass."""
    transient = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
    seen: set[int] = set()
    cause: BaseException | None = exc
    # httpx wraps httpcore's error, which wraps the ssl one: walk the chain to find it.
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLError) and not isinstance(cause, transient):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _refusal(response: httpx.Response, reason: str) -> str:
    """A status that retrying will not change, said in words an operator can act on."""
    hints = {
        401: "wrong username or password",
        403: "the account may not read the history API",
        404: "no history API here: is the URL the Management Node?",
    }
    if response.is_redirect:
        return f"{reason} to {response.headers.get('location')!r}: check the URL and scheme"
    hint = hints.get(response.status_code)
    if hint:
        return f"{reason} ({hint})"
    # Tastypie explains a 400 (a filter it does not allow, a bad time) in the body.
    return f"{reason}: {_snippet(response)}"


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _snippet(response: httpx.Response) -> str:
    text = response.content[:_BODY_SNIPPET].decode("utf-8", "replace")
    more = "..." if len(response.content) > _BODY_SNIPPET else ""
    return repr(text + more) if text else "(empty body)"


def _describe(exc: BaseException) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
