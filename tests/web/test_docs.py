"""The API explorer (/docs, /redoc) renders in a real browser from the service alone."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.web.conftest import Browser

# Schemes that never reach the network (chrome: is the browser's own start page).
LOCAL_SCHEMES = {"data", "blob", "about", "chrome"}


def _outside(urls: list[str], base: str) -> list[str]:
    """The URLs that are neither this service nor local to the browser."""
    service = urlsplit(base).netloc
    return [
        url
        for url in urls
        if urlsplit(url).scheme not in LOCAL_SCHEMES and urlsplit(url).netloc != service
    ]


def test_swagger_ui_renders_the_operations_from_local_assets(browser: Browser) -> None:
    browser.requested_urls()  # what the fresh browser loaded on its own
    browser.open("/docs")
    browser.wait_for(".opblock", timeout=20)
    paths = {element.text for element in browser.all(".opblock-summary-path")}
    assert "/api/v1/reconciliations" in paths
    assert "/api/v1/exports" in paths
    urls = browser.requested_urls()
    assert any(url.endswith("/swagger-ui-bundle.js") for url in urls)
    assert any(url.endswith("/openapi.json") for url in urls)
    assert _outside(urls, browser.base) == []
    assert browser.console_errors() == []


def test_redoc_renders_the_api_title_from_local_assets(browser: Browser) -> None:
    browser.requested_urls()
    browser.open("/redoc")
    title = browser.wait_for(".api-info h1", timeout=20)
    assert title.text.startswith("cdrecon")
    assert "Run a reconciliation" in browser.text("body")
    urls = browser.requested_urls()
    assert any(url.endswith("/redoc.standalone.js") for url in urls)
    assert _outside(urls, browser.base) == []
    # The bundle's CDN logo is refused by the page's policy; nothing else goes wrong.
    assert all("Content Security Policy" in error for error in browser.console_errors())


def test_the_outside_check_catches_a_cdn() -> None:
    base = "http://127.0.0.1:8000"
    urls = [
        f"{base}/docs",
        "data:image/png;base64,AAAA",
        "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js",
    ]
    assert _outside(urls, base) == [urls[2]]
