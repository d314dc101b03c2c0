"""The overview's traffic chart, derive backlog and MN history block in a real browser:
what admin sees against the API and the loaded scenario, 400 px, and billing's view."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.web.conftest import (
    NARROW,
    SILENT_NODE,
    Browser,
    Loaded,
    keep_screenshot,
    no_sideways_scroll,
)


def test_admin_sees_each_nodes_day_the_backlog_and_the_mn_history(
    browser: Browser, loaded: Loaded, tmp_path: Path
) -> None:
    browser.sign_in(loaded.admin)
    charts = {li.get_attribute("data-host"): li for li in browser.all("#traffic li")}
    assert set(charts) == set(loaded.nodes)
    for host, node in loaded.nodes.items():
        # Everything was sent in the last minutes: the day's total is the node's counter.
        assert int(charts[host].get_attribute("data-messages")) == node["messages"], host
        assert charts[host].find_elements("css selector", "svg path.line"), host
        assert ("silent" in charts[host].get_attribute("class")) == (host == SILENT_NODE)
    assert "silent 2 h" in charts[SILENT_NODE].text

    assert loaded.stats["derive_pending"] == 0
    assert browser.text("#derive-backlog").startswith("None")

    # The scenario's MN records are all participant records.
    assert browser.text("#mn-records") == f"{len(loaded.scenario.mn_records):,}"
    as_of = loaded.scenario.as_of.isoformat().replace("+00:00", "Z")
    assert browser.wait_for("#mn-as-of time").get_attribute("datetime") == as_of
    last = browser.text("#mn-last-load")
    assert "Last upload" in last and "mn.json" in last and "(operator)" in last
    assert "No pull from the MN yet" in browser.text("#mn-last-pull")
    assert browser.console_errors() == []
    keep_screenshot(browser, tmp_path, "cdrecon-overview-traffic.png")

    browser.driver.set_window_size(NARROW, 900)
    browser.driver.refresh()
    browser.wait_for("#traffic")
    no_sideways_scroll(browser)
    assert browser.console_errors() == []


def test_billing_sees_neither_the_traffic_nor_the_mn_block(loaded: Loaded) -> None:
    page = httpx.get(loaded.service.url, cookies={"cdrecon_token": loaded.billing})
    assert page.status_code == 200
    for part in ('id="traffic"', 'id="mn-history"', 'id="derive-backlog"'):
        assert part not in page.text
    admin = httpx.get(loaded.service.url, cookies={"cdrecon_token": loaded.admin})
    assert all(part in admin.text for part in ('id="traffic"', 'id="mn-history"'))
    # Drawn on the server: no script on the page, and its policy allows none.
    assert "<script" not in admin.text
    assert "script-src" not in admin.headers["content-security-policy"]
