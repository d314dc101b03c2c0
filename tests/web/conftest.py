"""A real headless Chromium driven by Selenium, and a real service loaded with a restore."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Service
from tests.reconcile.generator import Scenario, generate

# Debian's packages: `apt-get install -y chromium chromium-driver`.
CHROMIUM_NAMES = ("chromium", "chromium-browser")
SILENT_NODE = "conf-nyc-1"
ODD_HOST = "<b>x</b>&amp;"  # a legal RFC 5424 HOSTNAME that must show as text


def chromium_paths() -> tuple[str, str]:
    """(browser, driver) or skip: a newcomer's laptop may not have them; CI installs them."""
    browser = next((p for n in CHROMIUM_NAMES if (p := shutil.which(n))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "the browser tests need Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver)"
        )
    pytest.importorskip("selenium", reason="pip install -e '.[dev]' brings selenium")
    return browser, driver


@dataclass
class Browser:
    """One Chromium with a fresh profile and its own download folder."""

    driver: Any  # selenium.webdriver.Chrome
    downloads: Path
    base: str

    def open(self, path: str = "/") -> None:
        self.driver.get(self.base + path)

    def sign_in(self, token: str) -> None:
        """Paste `token` into the sign-in form and submit it, as a person would."""
        from selenium.webdriver.common.by import By

        self.open("/")
        field = self.wait_for("#token")
        field.clear()
        field.send_keys(token)
        self.driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        self.wait_for("#who-name, #login-error")

    def wait_for(self, css: str, timeout: float = 10) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
        )

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str) -> str:
        return str(self.wait_for(css).text)

    def downloaded(self, name: str, timeout: float = 15) -> bytes:
        """The bytes of a finished download called `name`."""
        path = self.downloads / name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            partial = list(self.downloads.glob("*.crdownload"))
            if path.exists() and not partial:
                return path.read_bytes()
            time.sleep(0.05)
        raise AssertionError(f"{name} was not downloaded; folder has {os.listdir(self.downloads)}")

    def requested_urls(self) -> list[str]:
        """Every URL the browser asked the network for since the last call, leaving out
        requests the page's Content-Security-Policy stopped before they were sent (the
        performance log is drained by reading it)."""
        urls: dict[str, str] = {}
        blocked: set[str] = set()
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message["params"]
            if message["method"] == "Network.requestWillBeSent":
                urls[params["requestId"]] = str(params["request"]["url"])
            elif message["method"] == "Network.loadingFailed" and params.get("blockedReason"):
                blocked.add(params["requestId"])
        return [url for request, url in urls.items() if request not in blocked]

    def console_errors(self) -> list[str]:
        """The page's console messages at level SEVERE since the last call."""
        return [
            str(entry["message"])
            for entry in self.driver.get_log("browser")
            if entry["level"] == "SEVERE"
        ]

    def screenshot(self, path: Path) -> None:
        """The whole page, however long."""
        height = int(self.driver.execute_script("return document.documentElement.scrollHeight"))
        self.driver.set_window_size(1280, max(height + 200, 800))
        self.driver.execute_script("window.scrollTo(0, 0)")
        self.driver.save_screenshot(str(path))


@contextmanager
def chromium(tmp_path: Path, base: str) -> Iterator[Browser]:
    """A headless Chromium with a fresh profile under `tmp_path`, pointed at `base`."""
    binary, driver_path = chromium_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    downloads = tmp_path / "downloads"
    downloads.mkdir(parents=True)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    driver = webdriver.Chrome(options=options, service=DriverService(executable_path=driver_path))
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    try:
        yield Browser(driver, downloads, base)
    finally:
        driver.quit()


@pytest.fixture
def browser(tmp_path: Path, loaded: Loaded) -> Iterator[Browser]:
    """A headless Chromium with a fresh profile, pointed at the loaded service."""
    with chromium(tmp_path, loaded.service.url) as opened:
        yield opened


@dataclass
class Loaded:
    """A running service holding a restore scenario, one run and one export batch."""

    service: Service
    scenario: Scenario
    admin: str
    billing: str
    stats: dict[str, Any]
    nodes: dict[str, dict[str, Any]]
    run: dict[str, Any]
    export: dict[str, Any]


def _send_syslog(service: Service, scenario: Scenario) -> int:
    """The nodes' lines as RFC 5424 over TCP, plus one unparsable frame and one odd host."""
    frames = [
        f"<134>1 {at.isoformat()} {node} pexip - - - {body}".encode()
        for node, at, body in scenario.lines
    ]
    frames.append(f"<134>1 2026-11-26T10:00:00Z {ODD_HOST} pexip - - - hello".encode())
    frames.append(b"\x00\xff not syslog at all")
    with socket.create_connection(("127.0.0.1", service.tcp_port)) as sock:
        sock.sendall(b"".join(frame + b"\n" for frame in frames))
    return len(frames)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """Syslog in over TCP, MN history uploaded, a reconciliation run, a billing export."""
    chromium_paths()  # no point loading anything without a browser
    service = Service(tmp_path_factory.mktemp("web-service"))
    try:
        service.start()  # inside: a start that timed out leaves a process to stop
        if service.get("/", token="").status_code == 404:
            pytest.fail("GET / is 404: app/api/app.py must include app.web.pages.router")
        admin = service.token("test-admin", "admin")
        billing = service.token("billing-clerk", "billing")
        scenario = generate(seed=21, days=1, calls_per_day=40)
        sent = _send_syslog(service, scenario)
        assert service.wait_for("cdrecon_messages_stored_total", sent) == sent
        uploaded = service.post(
            "/api/v1/history",
            params={"filename": "mn.json", "as_of": scenario.as_of.isoformat()},
            content=json.dumps(scenario.mn_records),
        )
        assert uploaded.status_code == 200, uploaded.text
        start, end = scenario.window
        run = service.post(
            "/api/v1/reconciliations", json={"from": start.isoformat(), "until": end.isoformat()}
        )
        assert run.status_code == 201, run.text
        assert run.json()["counts"]["missing_in_mn"] == len(scenario.lost) > 0
        export = service.post("/api/v1/exports", token=billing, json={"run_id": run.json()["id"]})
        assert export.status_code == 201, export.text
        # One node stopped sending two hours ago (its last-seen time is moved back: the
        # only way to age a node without waiting).
        with closing(sqlite3.connect(service.db_path)) as db, db:
            db.execute(
                "update nodes set last_seen_us = last_seen_us - 7200000000 where host = ?",
                (SILENT_NODE,),
            )
        yield Loaded(
            service=service,
            scenario=scenario,
            admin=admin,
            billing=billing,
            stats=service.get("/api/v1/stats").json(),
            nodes={n["host"]: n for n in service.get("/api/v1/nodes").json()},
            run=run.json(),
            export=export.json(),
        )
    finally:
        if service.process is not None:
            service.stop()


def sha256(content: bytes) -> str:
    """Hex SHA-256."""
    return hashlib.sha256(content).hexdigest()


NARROW = 400  # px: the narrowest window the pages are made for


def no_sideways_scroll(browser: Browser) -> None:
    """The page is no wider than the window: wide tables scroll in their own box."""
    widths = browser.driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    if widths[0] > widths[1]:  # name what sticks out, to say what to fix
        wide = browser.driver.execute_script(
            "return [...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > window.innerWidth"
            " && !e.closest('.scroll'))"
            ".slice(-5).map(e => e.tagName + '.' + e.className"
            " + ' in #' + (e.closest('[id]') || {}).id)"
        )
        raise AssertionError(f"page {widths[0]} px wide in a {widths[1]} px window: {wide}")


def keep_screenshot(browser: Browser, tmp_path: Path, name: str) -> Path:
    """A whole-page screenshot in the test's folder, copied to $CDRECON_SCREENSHOTS when
    set (the artefacts CI keeps)."""
    shot = tmp_path / name
    browser.screenshot(shot)
    assert shot.stat().st_size > 10_000
    shots = os.environ.get("CDRECON_SCREENSHOTS")
    if shots:
        shutil.copy(shot, Path(shots) / name)
    return shot
