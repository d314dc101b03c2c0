"""A run's page in a real browser against the real server: the summary, the records of one
status with the fields a person recognises them by, paging, 400 px, and who may see it."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

import httpx
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from tests.web.conftest import Browser, Loaded

NARROW = 400


def _no_sideways_scroll(browser: Browser) -> None:
    """The page is no wider than the window: wide tables scroll in their own box."""
    widths = browser.driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert widths[0] <= widths[1], widths


def test_the_lost_records_are_listed_with_conference_participant_and_start(
    browser: Browser, loaded: Loaded, tmp_path: Path
) -> None:
    run = loaded.run
    lost = set(loaded.scenario.lost)
    calls = {call.pid: call for call in loaded.scenario.calls}
    browser.sign_in(loaded.billing)

    # From the overview's run card to the run's page.
    browser.wait_for(f"#run-{run['id']} h3 a").click()
    browser.wait_for("#run-title")
    assert browser.text("#run-title") == f"Run {run['id']}"
    assert run["from"][:19] in browser.text("#run-window")
    assert browser.text("#run-tolerance") == "2 s"
    shown = {a.get_attribute("data-status"): a for a in browser.all("#counts a")}
    assert set(shown) >= set(run["counts"])  # every status the run lists
    for status, n in run["counts"].items():
        assert shown[status].find_element("css selector", ".n").text == f"{n:,}"
    # The summary's coverage block, whatever it holds.
    assert run["coverage"]["as_of"]["time"][:19] in browser.text("#coverage")
    [gap] = run["gaps"]
    cells = browser.all("#gaps tbody tr td")
    for cell, moment in zip(
        cells,
        (gap["last_kept_before"], gap["from"], gap["until"], gap["first_kept_after"]),
        strict=False,
    ):
        if moment is None:  # no MN record kept on that side of the gap
            assert cell.text == "none"
        else:
            assert cell.find_element("css selector", "time").get_attribute("datetime") == moment
    assert cells[4].text == str(gap["count"])

    # Filter with the keyboard: choose the status, Tab to the button, Enter.
    chooser = browser.wait_for("#status")
    Select(chooser).select_by_value("missing_in_mn")
    chooser.send_keys(Keys.TAB)
    focused = browser.driver.switch_to.active_element
    assert focused.text == "Show"
    focused.send_keys(Keys.ENTER)
    browser.wait_for("#items")
    assert browser.driver.current_url.endswith(f"/runs/{run['id']}?status=missing_in_mn")

    rows = browser.all("#items tbody tr")
    assert {row.get_attribute("data-cdr-id") for row in rows} == lost
    assert browser.text("#records-count").startswith(f"{len(lost)} record")
    for row in rows:
        call = calls[row.get_attribute("data-cdr-id")]
        cell = {
            td.get_attribute("data-field"): td for td in row.find_elements("css selector", "td")
        }
        assert cell["conference"].text == call.conference
        assert cell["participant"].text == call.alias
        started = cell["start"].find_element("css selector", "time").get_attribute("datetime")
        assert datetime.fromisoformat(started) == call.start
        assert cell["node"].text == call.node
        assert cell["duration"].text.count(":") == 2
    assert not browser.all("#next-page, #first-page")
    assert browser.console_errors() == []

    shot = tmp_path / "run-missing-in-mn.png"
    browser.screenshot(shot)
    assert shot.stat().st_size > 10_000
    shots = os.environ.get("CDRECON_SCREENSHOTS")
    if shots:
        shutil.copy(shot, Path(shots) / "cdrecon-run-missing-in-mn.png")

    # 400 px wide: the page does not scroll sideways; the table scrolls in its box.
    browser.driver.set_window_size(NARROW, 900)
    browser.driver.refresh()
    box = browser.wait_for("#items").find_element("xpath", "..")
    _no_sideways_scroll(browser)
    assert int(box.get_attribute("scrollWidth")) > int(box.get_attribute("clientWidth"))
    assert browser.console_errors() == []


def test_every_status_pages_through_all_items(browser: Browser, loaded: Loaded) -> None:
    run = loaded.run
    total = sum(run["counts"].values())
    browser.sign_in(loaded.admin)
    browser.open(f"/runs/{run['id']}?limit=20")
    seen: list[str] = []
    pages = 0
    while True:
        browser.wait_for("#items")
        seen += [
            f"{row.get_attribute('data-cdr-id')}|{row.get_attribute('data-mn-id')}"
            for row in browser.all("#items tbody tr")
        ]
        pages += 1
        following = browser.all("#next-page")
        if not following:
            break
        following[0].click()
    assert len(seen) == len(set(seen)) == total
    assert pages == -(-total // 20) > 1
    assert browser.all("#first-page")


def test_a_status_with_no_records_says_what_to_do_next(browser: Browser, loaded: Loaded) -> None:
    empty = [s for s, n in loaded.run["counts"].items() if n == 0]
    assert empty, "the scenario should leave some status empty"
    browser.sign_in(loaded.billing)
    browser.open(f"/runs/{loaded.run['id']}?status={empty[0]}")
    assert "Choose another status" in browser.text("#no-records")
    browser.driver.set_window_size(NARROW, 900)
    _no_sideways_scroll(browser)


def test_the_run_page_is_for_signed_in_tokens_only(loaded: Loaded) -> None:
    url = f"{loaded.service.url}/runs/{loaded.run['id']}"
    for token in (loaded.admin, loaded.billing):
        page = httpx.get(url, cookies={"cdrecon_token": token})
        assert page.status_code == 200 and 'id="items"' in page.text
        assert "script-src" not in page.headers["content-security-policy"]
    anonymous = httpx.get(url)
    assert anonymous.status_code == 401 and 'id="login"' in anonymous.text
    assert 'id="items"' not in anonymous.text
    revoked = httpx.get(url, cookies={"cdrecon_token": "cdr_revoked"})
    assert revoked.status_code == 401 and "no longer valid" in revoked.text
    # A bearer token is for the API; the page goes by the session cookie alone.
    bearer = httpx.get(url, headers={"Authorization": f"Bearer {loaded.admin}"})
    assert bearer.status_code == 401


def test_bad_run_page_requests_get_a_short_clear_page(loaded: Loaded) -> None:
    base = f"{loaded.service.url}/runs"
    cookies = {"cdrecon_token": loaded.billing}
    run_id = loaded.run["id"]
    for path, status, words in (
        ("/999999", 404, "no reconciliation run 999999"),
        (f"/{run_id}?status=lost_forever", 400, "has no status"),
        (f"/{run_id}?cursor=not-a-cursor", 400, "page link is not valid"),
    ):
        page = httpx.get(base + path, cookies=cookies)
        assert page.status_code == status, path
        assert words in page.text, path
        assert "Traceback" not in page.text
    assert httpx.get(f"{base}/0", cookies=cookies).status_code == 422
