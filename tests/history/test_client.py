"""HistoryClient against a real HTTP(S) server speaking the MN's Tastypie contract."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from app.history.client import (
    HistoryClient,
    MNConnection,
    MNError,
    format_mn_time,
)
from tests.history.fake_mn import API_ROOT, FakeMN, make_conferences, make_participants

PARTICIPANTS = make_participants(350)
MN_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")
BY_END = {"order_by": "end_time"}


def connection(mn: FakeMN, **overrides: Any) -> MNConnection:
    """Settings for tests: small pages, quick retries, and no rate limit unless asked."""
    settings: dict[str, Any] = {
        "page_size": 100,
        "backoff": 0.01,
        "timeout": 5.0,
        "requests_per_second": 1000.0,
    }
    return MNConnection(mn.url, mn.username, mn.password, **(settings | overrides))


async def pull(
    settings: MNConnection, resource: Any = "participant", filters: dict[str, str] = BY_END
) -> tuple[list[list[dict[str, Any]]], HistoryClient]:
    async with HistoryClient(settings) as client:
        pages = [page async for page in client.pages(resource, filters)]
    return pages, client


def ids(pages: list[list[dict[str, Any]]]) -> list[str]:
    return [record["id"] for page in pages for record in page]


@dataclass
class Answered:
    """One request the scripted MN answered: its offset, status and monotonic arrival time."""

    offset: int
    status: int
    at: float


@dataclass
class ScriptedMN:
    """An in-process MN behind `httpx.MockTransport`, for tests of status codes, paging and
    Retry-After only: it pages `records` by `limit`/`offset` and answers each offset in
    `fail_once` with `fail_status` (and `Retry-After`) the first time it is asked for."""

    records: list[dict[str, Any]]
    fail_once: set[int] = field(default_factory=set)
    fail_status: int = 503
    retry_after: str | None = None
    answered: list[Answered] = field(default_factory=list)
    url: str = "https://mn.example.com"

    def handle(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        offset, limit = int(params.get("offset", "0")), int(params["limit"])
        if offset in self.fail_once:
            self.fail_once.discard(offset)
            self.answered.append(Answered(offset, self.fail_status, time.monotonic()))
            headers = {} if self.retry_after is None else {"Retry-After": self.retry_after}
            return httpx.Response(self.fail_status, headers=headers)
        self.answered.append(Answered(offset, 200, time.monotonic()))
        more = offset + limit < len(self.records)
        link = httpx.URL(request.url.path, params=params | {"offset": str(offset + limit)})
        meta = {"next": str(link) if more else None, "total_count": len(self.records)}
        envelope = {"meta": meta, "objects": self.records[offset : offset + limit]}
        return httpx.Response(200, json=envelope)

    def offsets(self) -> list[int]:
        return [seen.offset for seen in self.answered]

    def connection(self, **overrides: Any) -> MNConnection:
        settings: dict[str, Any] = {"page_size": 100, "backoff": 0.01, "timeout": 5.0}
        settings |= {"requests_per_second": 1000.0}
        return MNConnection(self.url, "admin", "secret", **(settings | overrides))

    async def pull(self, **overrides: Any) -> tuple[list[list[dict[str, Any]]], HistoryClient]:
        transport = httpx.MockTransport(self.handle)
        async with HistoryClient(self.connection(**overrides), transport=transport) as client:
            pages = [page async for page in client.pages("participant", BY_END)]
        return pages, client


@pytest.fixture
def scripted() -> ScriptedMN:
    return ScriptedMN(PARTICIPANTS)


@pytest.fixture
def mn() -> Iterator[FakeMN]:
    with FakeMN(PARTICIPANTS, make_conferences(PARTICIPANTS)) as server:
        yield server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


# -- paging -------------------------------------------------------------------------------


async def test_pages_yield_every_record_once_in_order(mn: FakeMN) -> None:
    pages, client = await pull(connection(mn))

    assert [len(page) for page in pages] == [100, 100, 100, 50]
    assert ids(pages) == [p["id"] for p in PARTICIPANTS]
    assert mn.offsets() == [0, 100, 200, 300]
    assert (client.requests, client.retries, client.records) == (4, 0, 350)
    assert client.total_count == 350
    first = mn.requests[0].query
    assert first == {"format": "json", "limit": "100", "order_by": "end_time"}


async def test_meta_next_is_followed_as_the_relative_path_the_mn_sent(mn: FakeMN) -> None:
    # A token only the MN's links carry: a client building its own offsets would drop it.
    mn.next_extra = {"page_token": "from-the-mn"}

    pages, _ = await pull(connection(mn))

    assert len(ids(pages)) == 350
    for sent, answered in zip(mn.requests[1:], mn.requests, strict=False):
        assert answered.next_link is not None
        assert answered.next_link.startswith(f"{API_ROOT}participant/?")
        assert sent.target == answered.next_link
        assert sent.query["page_token"] == "from-the-mn"
    assert mn.requests[-1].next_link is None


async def test_page_size_is_capped_at_the_mn_maximum(mn: FakeMN) -> None:
    pages, client = await pull(connection(mn, page_size=5000))

    assert mn.requests[0].query["limit"] == "1000"
    assert len(pages) == 1
    assert client.records == 350


async def test_conference_resource_pages_the_same_way(mn: FakeMN) -> None:
    pages, _ = await pull(connection(mn, page_size=50), "conference")

    conferences = make_conferences(PARTICIPANTS)
    assert ids(pages) == [c["id"] for c in conferences]
    assert mn.offsets("conference") == [0, 50, 100]


async def test_page_reads_one_page_and_the_page_its_link_points_at(mn: FakeMN) -> None:
    mn.fail_once = {100}

    async with HistoryClient(connection(mn)) as client:
        first, link = await client.page("participant", BY_END)
        assert link is not None
        second, after = await client.page("participant", BY_END, link)

    assert ids([first, second]) == [p["id"] for p in PARTICIPANTS[:200]]
    assert after is not None  # there is more, but `page` never follows a link by itself
    assert mn.offsets() == [0, 100, 100]  # the 503 is retried, as in `pages`
    assert mn.requests[2].target == link
    assert (client.requests, client.retries, client.records) == (3, 1, 200)


@pytest.mark.parametrize(
    ("next_link", "body", "message"),
    [
        (f"{API_ROOT}participant/?format=json&limit=100&order_by=end_time", None, "not advance"),
        ("/api/admin/configuration/v1/conference/?offset=100", None, "meta.next leaves"),
        (
            None,
            f'{{"meta": {{"next": "{API_ROOT}participant/?offset=100"}}, "objects": []}}',
            "not advance",
        ),
    ],
)
async def test_page_refuses_a_link_or_a_page_that_goes_nowhere(
    mn: FakeMN, next_link: str | None, body: str | None, message: str
) -> None:
    if body is not None:
        mn.bodies = {0: ("application/json", body.encode())}

    async with HistoryClient(connection(mn)) as client:
        with pytest.raises(MNError, match=message):
            await client.page("participant", BY_END, next_link)

    assert len(mn.requests) == (1 if body is not None else 0)


# -- window filters -----------------------------------------------------------------------


def test_window_filters_are_half_open_in_the_mn_time_format() -> None:
    since = datetime(2020, 12, 21, 9, 0, tzinfo=UTC)
    # The same instant as 10:00 UTC, written in another zone: converted, zone dropped.
    until = datetime(2020, 12, 21, 11, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))

    assert HistoryClient.window_filters("end_time", since, until) == {
        "end_time__gte": "2020-12-21T09:00:00.000000",
        "end_time__lt": "2020-12-21T10:00:00.000005",
    }
    assert HistoryClient.window_filters("start_time", None, None) == {}
    # Naive datetimes are already UTC, as the MN's own times are.
    assert HistoryClient.window_filters("start_time", datetime(2020, 1, 2, 3, 4, 5), None) == {
        "start_time__gte": "2020-01-02T03:04:05.000000"
    }
    assert format_mn_time(datetime(999, 1, 1)) == "0999-01-01T00:00:00.000000"


def test_window_filters_refuse_an_inverted_window_or_a_bad_field() -> None:
    early, late = datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="starts after it ends"):
        HistoryClient.window_filters("end_time", late, early)
    with pytest.raises(ValueError, match="field name"):
        HistoryClient.window_filters("end_time&x=1", early, late)


async def test_window_includes_its_start_and_excludes_its_end_on_the_mn(mn: FakeMN) -> None:
    # Bounds exactly on two records' end times, to the microsecond.
    since = datetime.fromisoformat(PARTICIPANTS[10]["end_time"]).replace(tzinfo=UTC)
    until = datetime.fromisoformat(PARTICIPANTS[20]["end_time"]).replace(tzinfo=UTC)
    filters = {**HistoryClient.window_filters("end_time", since, until), **BY_END}

    pages, client = await pull(connection(mn), filters=filters)

    assert ids(pages) == [p["id"] for p in PARTICIPANTS[10:20]]
    sent = mn.requests[0].query
    assert sent["end_time__gte"] == PARTICIPANTS[10]["end_time"]
    assert sent["end_time__lt"] == PARTICIPANTS[20]["end_time"]
    assert MN_TIME.fullmatch(sent["end_time__gte"])
    assert client.total_count == 10


async def test_records_without_the_filtered_time_never_match() -> None:
    participants = make_participants(30, failed_every=3)
    since = datetime.fromisoformat(participants[0]["end_time"]) - timedelta(days=1)
    filters = {**HistoryClient.window_filters("start_time", since, None), "order_by": "start_time"}
    with FakeMN(participants) as server:
        pages, _ = await pull(connection(server), filters=filters)

    assert ids(pages) == [p["id"] for p in participants if p["start_time"] is not None]
    assert len(ids(pages)) == 20


async def test_filters_may_not_take_over_paging_parameters(mn: FakeMN) -> None:
    async with HistoryClient(connection(mn)) as client:
        with pytest.raises(ValueError, match="offset"):
            await anext(client.pages("participant", {"offset": "5"}))
        with pytest.raises(ValueError, match="unknown history resource"):
            await anext(client.pages("alarm", {}))  # type: ignore[arg-type]
    assert mn.requests == []


# -- retries ------------------------------------------------------------------------------


async def test_a_503_is_retried_without_losing_or_repeating_records(
    scripted: ScriptedMN,
) -> None:
    scripted.fail_once = {100}

    pages, client = await scripted.pull()

    assert ids(pages) == [p["id"] for p in PARTICIPANTS]
    assert scripted.offsets() == [0, 100, 100, 200, 300]
    assert [seen.status for seen in scripted.answered] == [200, 503, 200, 200, 200]
    assert (client.requests, client.retries) == (5, 1)


async def test_a_page_slower_than_the_timeout_is_asked_for_again(mn: FakeMN) -> None:
    mn.slow = {200: 0.6}

    pages, client = await pull(connection(mn, timeout=0.3))

    assert ids(pages) == [p["id"] for p in PARTICIPANTS]
    assert mn.offsets() == [0, 100, 200, 200, 300]
    assert client.retries == 1


async def test_retry_after_is_honoured(scripted: ScriptedMN) -> None:
    scripted.fail_once, scripted.fail_status, scripted.retry_after = {0}, 429, "1"

    pages, client = await scripted.pull()

    assert len(ids(pages)) == 350
    refused, retried = scripted.answered[0], scripted.answered[1]
    assert refused.status == 429
    assert retried.at - refused.at >= 0.95  # our backoff alone would be about 0.01 s
    assert client.retries == 1


async def test_a_retry_after_beyond_reason_ends_the_pull_at_once(scripted: ScriptedMN) -> None:
    scripted.fail_once, scripted.fail_status, scripted.retry_after = {0}, 503, "3600"

    with pytest.raises(MNError, match="Retry-After 3600") as caught:
        await scripted.pull()

    assert caught.value.status == 503
    assert len(scripted.answered) == 1


async def test_retries_run_out(scripted: ScriptedMN) -> None:
    scripted.fail_once = {100}

    with pytest.raises(MNError, match=r"gave up after 1 attempt\(s\); last: HTTP 503") as caught:
        await scripted.pull(max_retries=0)

    assert caught.value.status == 503
    assert caught.value.url.startswith(f"{scripted.url}{API_ROOT}participant/?")
    assert "offset=100" in caught.value.url


async def test_an_unreachable_mn_is_retried_then_reported(mn: FakeMN) -> None:
    # Nothing listens on the port any more once the fake has stopped.
    mn.stop()
    settings = connection(mn, max_retries=2)

    with pytest.raises(MNError, match=r"gave up after 3 attempt\(s\); last: ConnectError"):
        await pull(settings)


# -- refusals -----------------------------------------------------------------------------


async def test_a_wrong_password_fails_at_once_without_retrying(mn: FakeMN) -> None:
    settings = replace(connection(mn), password="wrong")

    refused = r"HTTP 401 Unauthorized \(wrong username or password\)"
    with pytest.raises(MNError, match=refused) as caught:
        await pull(settings)

    assert caught.value.status == 401
    assert mn.url in str(caught.value)
    assert "wrong" not in caught.value.url
    assert [seen.status for seen in mn.requests] == [401]


async def test_a_url_that_is_not_the_mn_fails_at_once(mn: FakeMN) -> None:
    settings = replace(connection(mn), url=f"{mn.url}/somewhere")

    with pytest.raises(MNError, match="HTTP 404") as caught:
        await pull(settings)

    assert caught.value.status == 404
    assert len(mn.requests) == 1


@pytest.mark.parametrize(
    ("offset", "content_type", "body", "message"),
    [
        (0, "text/html", b"<html>Please log in</html>", "not JSON.*Please log in"),
        (100, "application/json", b'{"error": "boom"}', "not a Tastypie list envelope"),
        (0, "application/json", b'{"meta": {"next": null}, "objects": [1]}', "not a Tastypie"),
        (0, "application/json", b"[]", "not a Tastypie list envelope"),
    ],
)
async def test_a_reply_that_is_not_an_envelope_fails_at_once(
    mn: FakeMN, offset: int, content_type: str, body: bytes, message: str
) -> None:
    mn.bodies = {offset: (content_type, body)}

    with pytest.raises(MNError, match=message):
        await pull(connection(mn))

    assert mn.offsets() == ([0, 100] if offset else [0])


@pytest.mark.parametrize(
    ("next_link", "message"),
    [
        (f"{API_ROOT}participant/?format=json&limit=100&offset=0", "paging does not advance"),
        ("/api/admin/configuration/v1/conference/?offset=100", "meta.next leaves"),
    ],
)
async def test_a_next_link_that_loops_or_wanders_is_refused(
    mn: FakeMN, next_link: str, message: str
) -> None:
    envelope = f'{{"meta": {{"next": "{next_link}"}}, "objects": [{{"id": "x"}}]}}'
    mn.bodies = {0: ("application/json", envelope.encode())}

    with pytest.raises(MNError, match=message):
        await pull(connection(mn))

    assert len(mn.requests) <= 2
    assert all(seen.path == f"{API_ROOT}participant/" for seen in mn.requests)


# -- TLS ----------------------------------------------------------------------------------


async def test_tls_with_the_ca_bundle_works(ca: trustme.CA, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with FakeMN(PARTICIPANTS, tls=ca) as server:
        assert server.url.startswith("https://")
        pages, _ = await pull(connection(server, ca_bundle=bundle))

    assert len(ids(pages)) == 350


async def test_tls_without_the_ca_fails_at_once(ca: trustme.CA) -> None:
    with FakeMN(PARTICIPANTS, tls=ca) as server:
        async with HistoryClient(connection(server)) as client:
            with pytest.raises(MNError, match=r"TLS handshake failed.*CERTIFICATE_VERIFY_FAILED"):
                await anext(client.pages("participant", BY_END))

    assert (client.requests, client.retries) == (1, 0)
    assert server.requests == []


async def test_tls_verification_can_be_turned_off(ca: trustme.CA) -> None:
    with FakeMN(PARTICIPANTS, tls=ca) as server:
        pages, _ = await pull(connection(server, verify_tls=False))

    assert len(ids(pages)) == 350


def test_a_missing_ca_bundle_is_reported(tmp_path: Path) -> None:
    settings = MNConnection("https://mn.example.com", "admin", "x", ca_bundle=tmp_path / "none")

    with pytest.raises(MNError, match="cannot load CA bundle"):
        HistoryClient(settings)._tls_verification()


# -- rate limit ---------------------------------------------------------------------------


async def test_requests_are_spaced_by_the_rate_limit(mn: FakeMN) -> None:
    rate = 10.0

    await pull(connection(mn, requests_per_second=rate))

    times = [seen.at for seen in mn.requests]
    assert len(times) == 4
    # A lower bound only; the slack covers the first request's connection set-up, which
    # delays its arrival but not the later ones'.
    assert times[-1] - times[0] >= (len(times) - 1) / rate - 0.02


# -- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "mn.example.com"}, "http"),
        ({"url": "https://mn.example.com/?x=1"}, "query"),
        ({"page_size": 0}, "page_size"),
        ({"timeout": 0}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"requests_per_second": 0}, "requests_per_second"),
        ({"ca_bundle": Path("ca.pem"), "verify_tls": False}, "verification is turned off"),
    ],
)
def test_connection_settings_are_checked(overrides: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"url": "https://mn.example.com", "username": "u", "password": "p"}
    with pytest.raises(ValueError, match=message):
        MNConnection(**(settings | overrides))


def test_the_password_stays_out_of_reprs() -> None:
    assert "hunter2" not in repr(MNConnection("https://mn.example.com", "admin", "hunter2"))


async def test_pages_need_the_client_open() -> None:
    client = HistoryClient(MNConnection("https://mn.example.com", "admin", "x"))
    with pytest.raises(RuntimeError, match="async with"):
        await anext(client.pages("participant", {}))
