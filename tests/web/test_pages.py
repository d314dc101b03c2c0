"""The web page in a real browser against the real server: sign-in, what each scope sees,
downloads through the session cookie, sign-out."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx

from tests.web.conftest import ODD_HOST, SILENT_NODE, Browser, Loaded, sha256


def test_admin_signs_in_and_sees_receiver_runs_and_exports(
    browser: Browser, loaded: Loaded
) -> None:
    browser.sign_in(loaded.admin)
    assert browser.text("#who-name") == "test-admin"
    assert browser.text("#who-scope").lower() == "admin"

    # The receiver's figures are the API's.
    stats = loaded.stats
    for field in (
        "messages",
        "parse_failures",
        "events",
        "cdrs",
        "queued",
        "derive_pending",
        "nodes",
    ):
        element_id = "#stat-" + field.replace("_", "-")
        assert browser.text(element_id) == f"{stats[field]:,}", field
    assert stats["parse_failures"] == 1
    # The database's size and its disk's free space (the disk budget, app/retention/budget.py).
    assert re.fullmatch(r"[\d.]+ [KMG]iB \([\d.]+ [KMGT]iB\)", browser.text("#stat-disk"))

    # Every node, with its counts; the one quiet for two hours is flagged, the rest are not.
    rows = {row.get_attribute("data-host"): row for row in browser.all("#nodes tbody tr")}
    assert set(rows) == set(loaded.nodes)
    for host, node in loaded.nodes.items():
        cells = [cell.text for cell in rows[host].find_elements("css selector", "td")]
        assert cells[0] == host
        assert cells[3] == f"{node['messages']:,}"
        assert cells[4] == f"{node['parse_failures']:,}"
        assert ("silent" in rows[host].get_attribute("class")) == (host == SILENT_NODE)
    assert "silent 2 h" in rows[SILENT_NODE].text
    assert "1 node silent for more than 15 minutes" in browser.text("#silent-alert")
    # Markup in a sender's hostname is shown as text, never run.
    assert ODD_HOST in rows
    assert not browser.all("#nodes td b")

    # The run: missing_in_mn up front, every count, the gap.
    run = loaded.run
    card = browser.wait_for(f"#run-{run['id']}")
    assert card.find_element("css selector", ".missing .big").text == str(len(loaded.scenario.lost))
    # The loaded export holds them all: the card does not ask for them to be billed again.
    billed = card.find_element("css selector", ".missing [data-field=exported]")
    assert billed.text == "all in an export batch: nothing left to bill"
    assert "lost" not in card.find_element("css selector", ".missing").get_attribute("class")
    shown = {
        dd.get_attribute("data-status"): dd.text
        for dd in card.find_elements("css selector", "[data-status]")
    }
    assert set(run["counts"]) <= set(shown)
    assert shown == {status: f"{run['counts'].get(status, 0):,}" for status in shown}
    [gap] = run["gaps"]
    [gap_row] = card.find_elements("css selector", ".gaps tbody tr")
    gap_cells = gap_row.find_elements("css selector", "td")
    assert [
        c.find_element("css selector", "time").get_attribute("datetime") for c in gap_cells[:2]
    ] == [
        gap["from"],
        gap["until"],
    ]
    assert gap_cells[2].text == str(gap["count"])
    assert gap_cells[3].text == ", ".join(gap["nodes"])
    assert run["from"][:19] in card.text and run["until"][:19] in card.text

    # The export batch, and its downloads are the manifest's bytes.
    batch = loaded.export
    row = browser.wait_for(f"#export-{batch['id']}")
    assert "billing-clerk" in row.text
    assert row.find_element("css selector", "[data-field=record_count]").text == str(
        batch["record_count"]
    )
    assert f"({batch['total_duration']:,} s)" in row.text
    for fmt in ("csv", "jsonl"):
        link = row.find_element("css selector", f"a[data-format={fmt}]")
        assert link.get_attribute("href").endswith(
            f"/api/v1/exports/{batch['id']}/download?format={fmt}"
        )
        link.click()
        content = browser.downloaded(f"cdrecon-{batch['id']}.{fmt}")
        assert sha256(content) == batch["sha256"][fmt], fmt

    # The token sits in an HttpOnly, SameSite=Strict cookie that page scripts cannot read.
    [cookie] = browser.driver.get_cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
        "cdrecon_token",
        True,
        "Strict",
    )
    assert cookie["secure"] is False  # plain http here; https sets Secure
    assert "cdrecon_token" not in browser.driver.execute_script("return document.cookie")

    shots = os.environ.get("CDRECON_SCREENSHOTS")
    if shots:
        browser.screenshot(Path(shots) / "cdrecon-overview-admin.png")


def test_a_wrong_token_shows_the_form_again_with_an_error(browser: Browser, loaded: Loaded) -> None:
    browser.sign_in(loaded.admin[:-4] + "AAAA")
    assert "not valid" in browser.text("#login-error")
    assert browser.all("#token") and not browser.all("#who-name")
    assert browser.driver.get_cookies() == []
    shots = os.environ.get("CDRECON_SCREENSHOTS")
    if shots:
        browser.screenshot(Path(shots) / "cdrecon-sign-in-error.png")
    # The same form answer carries 401.
    answer = httpx.post(f"{loaded.service.url}/login", data={"token": "cdr_nope"})
    assert answer.status_code == 401
    assert "not valid" in answer.text
    assert "set-cookie" not in answer.headers
    # A saved token that stopped working (revoked) sends the browser back to the form.
    stale = httpx.get(loaded.service.url, cookies={"cdrecon_token": "cdr_revoked"})
    assert stale.status_code == 401
    assert "no longer valid" in stale.text
    assert stale.headers["set-cookie"].startswith('cdrecon_token=""; ')


def test_billing_sees_runs_and_exports_but_no_receiver_data(
    browser: Browser, loaded: Loaded
) -> None:
    browser.sign_in(loaded.billing)
    assert browser.text("#who-name") == "billing-clerk"
    assert browser.text("#who-scope").lower() == "billing"
    browser.wait_for(f"#run-{loaded.run['id']}")
    browser.wait_for(f"#export-{loaded.export['id']}")
    assert not browser.all("#receiver, #nodes, #stat-messages")
    text = browser.text("body")
    assert "Syslog receiver" not in text
    assert "x</b>" not in text and "127.0.0.1" not in text  # senders seen only in nodes
    shots = os.environ.get("CDRECON_SCREENSHOTS")
    if shots:
        browser.screenshot(Path(shots) / "cdrecon-overview-billing.png")


def test_sign_out_forgets_the_token(browser: Browser, loaded: Loaded) -> None:
    browser.sign_in(loaded.admin)
    browser.wait_for("#logout").click()
    browser.wait_for("#login")
    assert browser.driver.get_cookies() == []
    download = f"/api/v1/exports/{loaded.export['id']}/download?format=jsonl"
    browser.open(download)
    assert "unauthenticated" in browser.driver.page_source
    browser.open("/")
    browser.wait_for("#token")


def test_a_sign_in_posted_from_another_site_is_refused(loaded: Loaded) -> None:
    answer = httpx.post(
        f"{loaded.service.url}/login",
        data={"token": loaded.admin},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers
