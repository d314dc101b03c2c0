"""The tokens page in a real browser against the real server: list, create (the secret
shown once), revoke, the form's messages, and that only admin tokens may use it."""

from __future__ import annotations

from pathlib import Path

import httpx
from selenium.webdriver.support.ui import Select

from app.web.tokens import TokenForm, check_form
from tests.web.conftest import NARROW, Browser, Loaded, keep_screenshot, no_sideways_scroll


def _api(loaded: Loaded, token: str) -> int:
    return httpx.get(
        f"{loaded.service.url}/api/v1/cdrs?limit=1", headers={"Authorization": f"Bearer {token}"}
    ).status_code


def test_admin_creates_a_token_sees_it_once_and_revokes_it(
    browser: Browser, loaded: Loaded, tmp_path: Path
) -> None:
    browser.sign_in(loaded.admin)
    browser.wait_for(".nav a[href='/tokens']").click()
    listed = {row.get_attribute("data-name") for row in browser.all("#token-table tbody tr")}
    assert {"test-admin", "billing-clerk"} <= listed

    browser.wait_for("#token-name").send_keys("reporting-script")
    Select(browser.wait_for("#token-scope")).select_by_value("billing")
    browser.wait_for("#create-token").click()
    secret = browser.wait_for("#new-token").get_attribute("value")
    assert secret.startswith("cdr_")
    assert "shown only this once" in browser.text("#created")
    assert _api(loaded, secret) == 200
    row = browser.wait_for("#token-table tr[data-name='reporting-script']")
    assert "billing" in row.text.lower() and "active" in row.text
    assert browser.console_errors() == []
    keep_screenshot(browser, tmp_path, "cdrecon-tokens-created.png")

    # Shown once: the page, opened again, has no secret in it.
    browser.open("/tokens")
    browser.wait_for("#token-table")
    assert not browser.all("#new-token")
    assert secret not in browser.driver.page_source

    browser.wait_for("#token-table tr[data-name='reporting-script'] button.danger").click()
    assert "'reporting-script' is revoked" in browser.text("#tokens-notice")
    row = browser.wait_for("#token-table tr[data-name='reporting-script']")
    assert "revoked" in row.get_attribute("class")
    assert not row.find_elements("css selector", "button")
    assert _api(loaded, secret) == 401
    audit = loaded.service.get("/api/v1/audit?limit=1000").json()["items"]
    actions = {(e["actor"], e["action"], e["target"]) for e in audit}
    assert ("test-admin", "token.create", "reporting-script") in actions
    assert ("test-admin", "token.revoke", "reporting-script") in actions

    browser.driver.set_window_size(NARROW, 900)
    browser.driver.refresh()
    browser.wait_for("#token-table")
    no_sideways_scroll(browser)
    assert browser.console_errors() == []


def test_the_form_says_what_is_wrong_next_to_the_field(browser: Browser, loaded: Loaded) -> None:
    browser.sign_in(loaded.admin)
    browser.open("/tokens")
    browser.wait_for("#create-token").click()  # no name
    assert "Give the token a name" in browser.text("#name-error")
    assert browser.wait_for("#token-name").get_attribute("aria-invalid") == "true"
    browser.wait_for("#token-name").send_keys("billing-clerk")  # taken
    browser.wait_for("#create-token").click()
    assert "exists already" in browser.text("#name-error")
    assert browser.wait_for("#token-name").get_attribute("value") == "billing-clerk"
    assert not browser.all("#new-token")
    assert browser.console_errors() == []


def test_revoking_the_token_one_is_signed_in_with_signs_out(
    browser: Browser, loaded: Loaded
) -> None:
    cookies = {"cdrecon_token": loaded.admin}
    made = httpx.post(
        f"{loaded.service.url}/tokens",
        data={"name": "short-lived", "scope": "admin"},
        cookies=cookies,
    )
    assert made.status_code == 200
    secret = made.text.split('id="new-token"')[1].split('value="')[1].split('"')[0]
    browser.sign_in(secret)
    browser.open("/tokens")
    browser.wait_for("#token-table tr[data-name='short-lived'] button.danger").click()
    assert "You revoked 'short-lived'" in browser.text("#login-error")
    assert browser.driver.get_cookies() == []
    browser.open("/tokens")
    browser.wait_for("#login")


def test_tokens_are_for_admin_only(browser: Browser, loaded: Loaded) -> None:
    url = f"{loaded.service.url}/tokens"
    billing = {"cdrecon_token": loaded.billing}
    page = httpx.get(url, cookies=billing)
    assert page.status_code == 403 and 'id="forbidden"' in page.text
    assert "token-table" not in page.text
    made = httpx.post(url, data={"name": "sneaky", "scope": "admin"}, cookies=billing)
    assert made.status_code == 403 and "new-token" not in made.text
    gone = httpx.post(f"{url}/revoke", data={"name": "test-admin"}, cookies=billing)
    assert gone.status_code == 403
    assert _api(loaded, loaded.admin) == 200
    assert httpx.get(url).status_code == 401
    # A form posted from another site changes nothing, even with an admin's cookie.
    forged = httpx.post(
        url,
        data={"name": "forged", "scope": "admin"},
        cookies={"cdrecon_token": loaded.admin},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert forged.status_code == 403 and "new-token" not in forged.text
    listed = httpx.get(url, cookies={"cdrecon_token": loaded.admin}).text
    assert 'data-name="sneaky"' not in listed and 'data-name="forged"' not in listed

    browser.sign_in(loaded.billing)
    assert not browser.all(".nav a[href='/tokens']")
    browser.open("/tokens")
    assert "admin" in browser.text("#forbidden")
    # The browser logs the page's own 403 status; nothing else may go wrong.
    assert [e for e in browser.console_errors() if "status of 403" not in e] == []


def test_the_form_is_checked_before_anything_is_stored() -> None:
    assert check_form({"name": "  ops ", "scope": "admin"}) == ("ops", "admin")
    refused = check_form({"name": "", "scope": "root"})
    assert isinstance(refused, TokenForm)
    assert set(refused.errors) == {"name", "scope"}
    long = check_form({"name": "x" * 129, "scope": "billing"})
    assert isinstance(long, TokenForm) and "128" in long.errors["name"]
