"""The CDR pages in a real browser against the real server: search by window, conference,
alias, protocol and state (the API's answers are the oracle), paging, one CDR with its
events and raw lines, 400 px, the form's messages, and who sees what."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from selenium.webdriver.common.keys import Keys

from tests.web.conftest import NARROW, Browser, Loaded, keep_screenshot, no_sideways_scroll


def _api_ids(loaded: Loaded, **filters: str) -> list[str]:
    """Every CDR id the API lists for `filters`, in its order."""
    ids: list[str] = []
    cursor = None
    while True:
        query = {**filters, "limit": "1000"} | ({"cursor": cursor} if cursor else {})
        page = loaded.service.get(f"/api/v1/cdrs?{urlencode(query)}").json()
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


def _window(loaded: Loaded) -> dict[str, str]:
    start, end = loaded.scenario.window
    return {"from": start.isoformat(), "until": end.isoformat()}


def _shown(browser: Browser) -> list[str]:
    return [row.get_attribute("data-cdr-id") for row in browser.all("#cdr-table tbody tr")]


def test_cdrs_are_found_like_the_api_finds_them(
    browser: Browser, loaded: Loaded, tmp_path: Path
) -> None:
    browser.sign_in(loaded.admin)
    browser.wait_for(".nav a[href='/cdrs']").click()
    # The page opens on the last 24 hours; the scenario is older, and the page says what to do.
    assert "Clear From" in browser.text("#no-cdrs")
    assert browser.wait_for("#from").get_attribute("value")
    assert browser.console_errors() == []

    window = _window(loaded)
    call = next(c for c in loaded.scenario.calls if c.kind == "normal")
    for filters in (
        {},
        {"conference": call.conference},
        {"alias": call.alias[1:-1].upper()},
        {"protocol": call.protocol.lower()},
        {"state": "failed"},
        {"state": "open", "protocol": "sip"},
    ):
        browser.open(f"/cdrs?{urlencode(window | filters | {'limit': '1000'})}")
        browser.wait_for("#cdr-table, #no-cdrs")
        assert _shown(browser) == _api_ids(loaded, **window, **filters), filters
        if "state" not in filters:
            assert call.pid in _shown(browser), filters
    assert call.pid in _api_ids(loaded, **window, alias=call.alias[1:-1].upper())

    # Keyboard: type an alias into the form and press Enter; the window is kept.
    browser.open(f"/cdrs?{urlencode(window)}")
    field = browser.wait_for("#alias")
    field.send_keys(call.alias)
    field.send_keys(Keys.ENTER)
    browser.wait_for("#cdr-table")
    assert call.pid in _shown(browser)
    assert browser.wait_for("#alias").get_attribute("value") == call.alias
    start = loaded.scenario.window[0].replace(tzinfo=None)
    assert datetime.fromisoformat(browser.wait_for("#from").get_attribute("value")) == start
    [asked] = parse_qs(urlsplit(browser.driver.current_url).query)["from"]
    assert datetime.fromisoformat(asked) == start
    assert browser.console_errors() == []
    keep_screenshot(browser, tmp_path, "cdrecon-cdrs-search.png")

    browser.driver.set_window_size(NARROW, 900)
    browser.driver.refresh()
    browser.wait_for("#cdr-table")
    no_sideways_scroll(browser)
    box = browser.wait_for("#cdr-table").find_element("xpath", "..")
    assert int(box.get_attribute("scrollWidth")) > int(box.get_attribute("clientWidth"))
    assert browser.console_errors() == []


def test_every_cdr_of_a_window_is_paged_through_once(browser: Browser, loaded: Loaded) -> None:
    window = _window(loaded)
    browser.sign_in(loaded.billing)
    browser.open(f"/cdrs?{urlencode(window | {'limit': '25'})}")
    seen: list[str] = []
    while True:
        browser.wait_for("#cdr-table")
        seen += _shown(browser)
        following = browser.all("#next-page")
        if not following:
            break
        following[0].click()
    assert seen == _api_ids(loaded, **window)
    assert len(seen) > 25 and browser.all("#first-page")


def _detail(loaded: Loaded, pid: str) -> dict[str, Any]:
    answer = loaded.service.get(f"/api/v1/cdrs/{pid}")
    assert answer.status_code == 200
    detail: dict[str, Any] = answer.json()
    return detail


def test_a_cdr_shows_its_events_and_the_raw_lines_behind_them(
    browser: Browser, loaded: Loaded, tmp_path: Path
) -> None:
    call = next(c for c in loaded.scenario.calls if c.kind == "normal" and c.end is not None)
    api = _detail(loaded, call.pid)
    browser.sign_in(loaded.admin)
    browser.open(f"/cdrs?{urlencode(_window(loaded) | {'alias': call.alias, 'limit': '1000'})}")
    browser.wait_for(f"#cdr-table tr[data-cdr-id='{call.pid}'] a").click()
    assert call.pid in browser.text("#cdr-title")
    fields = browser.text("#cdr-fields")
    assert call.conference in fields and call.alias in fields
    assert api["start_time"][:19] in fields

    events = browser.all(".event")
    assert len(events) == len(api["events"]) == 2
    for shown, event in zip(events, api["events"], strict=True):
        lines = shown.find_elements("css selector", ".line")
        assert [int(line.get_attribute("data-message-id")) for line in lines] == event[
            "message_ids"
        ]
        for line in lines:
            assert line.find_element("css selector", "[data-field=node]").text == call.node
            assert line.find_element("css selector", "[data-field=transport]").text == "TCP"
            assert "127.0.0.1:" in line.find_element("css selector", "[data-field=peer]").text
            raw = line.find_element("css selector", "pre.raw").text
            assert f'Participant-id="{call.pid}"' in raw and event["message"] in raw
    assert browser.console_errors() == []
    keep_screenshot(browser, tmp_path, "cdrecon-cdr-detail.png")

    # Every CDR of the same conference, one click away.
    browser.wait_for("#same-conference").click()
    browser.wait_for("#cdr-table")
    assert call.pid in _shown(browser)

    browser.driver.set_window_size(NARROW, 900)
    browser.open(f"/cdrs/{call.pid}")
    browser.wait_for(".event")
    no_sideways_scroll(browser)
    assert browser.console_errors() == []


def test_billing_sees_the_lines_but_not_the_senders_addresses(loaded: Loaded) -> None:
    pid = next(c.pid for c in loaded.scenario.calls if c.kind == "normal")
    url = f"{loaded.service.url}/cdrs/{pid}"
    billing = httpx.get(url, cookies={"cdrecon_token": loaded.billing})
    assert billing.status_code == 200
    assert 'class="raw"' in billing.text and 'data-field="transport"' in billing.text
    assert "127.0.0.1" not in billing.text and 'data-field="peer"' not in billing.text
    admin = httpx.get(url, cookies={"cdrecon_token": loaded.admin})
    assert 'data-field="peer"' in admin.text
    for path in (f"/cdrs/{pid}", "/cdrs"):
        anonymous = httpx.get(loaded.service.url + path)
        assert anonymous.status_code == 401 and 'id="login"' in anonymous.text


def test_wrong_searches_say_what_to_correct(browser: Browser, loaded: Loaded) -> None:
    base = f"{loaded.service.url}/cdrs"
    cookies = {"cdrecon_token": loaded.billing}
    for query, field, words in (
        ({"from": "yesterday"}, "from", "Give a date and time"),
        (
            {"from": "2026-11-21T00:00", "until": "2026-11-20T00:00"},
            "until",
            "later than From",
        ),
        ({"state": "lost"}, "state", "Choose a state"),
    ):
        page = httpx.get(f"{base}?{urlencode(query)}", cookies=cookies)
        assert page.status_code == 200, query
        assert f'id="{field}-error"' in page.text and words in page.text, query
        assert 'id="cdr-table"' not in page.text
    for path, status, words in (
        ("?cursor=not-a-cursor", 400, "page link is not valid"),
        ("/no-such-participant", 404, "no CDR for participant"),
    ):
        page = httpx.get(base + path, cookies=cookies)
        assert page.status_code == status and words in page.text, path
        assert "Traceback" not in page.text

    browser.sign_in(loaded.admin)
    browser.open("/cdrs?from=2026-11-21T00:00&until=2026-11-20T00:00")
    assert "later than From" in browser.text("#until-error")
    assert browser.wait_for("#until").get_attribute("aria-invalid") == "true"
    browser.open("/cdrs?conference=no+such+conference&from=")
    assert "No CDR matches this search" in browser.text("#no-cdrs")
    browser.driver.set_window_size(NARROW, 900)
    no_sideways_scroll(browser)
    assert browser.console_errors() == []


def test_a_lost_record_opens_on_its_cdr_with_the_syslog_behind_it(
    browser: Browser, loaded: Loaded
) -> None:
    browser.sign_in(loaded.billing)
    browser.open(f"/runs/{loaded.run['id']}?status=missing_in_mn")
    row = browser.wait_for("#items tbody tr")
    pid = row.get_attribute("data-cdr-id")
    assert pid in loaded.scenario.lost
    row.find_element("css selector", "a.to-cdr").click()
    assert pid in browser.text("#cdr-title")
    assert browser.all(".event pre.raw")
    assert browser.console_errors() == []
