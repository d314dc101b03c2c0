"""A restore handled end to end in the browser, in one Chromium session against a fresh
service: sign in, syslog arrives, MN history is imported and a reconciliation run from the
forms, the gap shows on the timeline, the lost records are listed, billing makes a batch and
downloads the API's very bytes, and revoking a token ends its session. Every page is
screenshotted (into $CDRECON_SCREENSHOTS when set) and must log no console error."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service
from tests.reconcile.generator import Scenario, generate
from tests.web.conftest import Browser, _send_syslog, chromium, chromium_paths


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Service]:
    """A running service with nothing in it."""
    chromium_paths()
    service = Service(tmp_path / "service")
    service.workdir.mkdir()
    try:
        service.start(timeout=60)  # a loaded machine starts it slowly
        yield service
    finally:  # a start that timed out leaves its process running: stop it too
        if service.process is not None:
            service.stop()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where the screenshots go: $CDRECON_SCREENSHOTS, or the test's temporary folder."""
    folder = Path(os.environ.get("CDRECON_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Story:
    """The browser, and the checks made on every page shown."""

    def __init__(self, browser: Browser, shots: Path) -> None:
        self.browser = browser
        self.shots = shots
        self.taken: list[Path] = []

    def page(self, name: str) -> None:
        """The page shown logged no console error; screenshot it as `name`."""
        assert self.browser.console_errors() == [], name
        path = self.shots / f"story-{len(self.taken) + 1:02d}-{name}.png"
        self.browser.screenshot(path)
        assert path.stat().st_size > 5_000
        self.taken.append(path)

    def fill(self, css: str, text: str) -> None:
        field = self.browser.wait_for(css)
        field.clear()
        field.send_keys(text)

    def click(self, css: str) -> None:
        self.browser.wait_for(css).click()


def _iso(moment: object) -> str:
    return str(moment).replace("+00:00", "Z").replace(" ", "T")


def test_a_restore_from_first_look_to_the_billing_file(
    fresh: Service, tmp_path: Path, shots: Path
) -> None:
    service = fresh
    admin = service.token("ops", "admin")
    billing = service.token("billing-team", "billing")
    scenario: Scenario = generate(seed=21, days=1, calls_per_day=40)
    start, end = scenario.window

    with chromium(tmp_path / "chromium", service.url) as browser:
        story = Story(browser, shots)

        # Sign in; no node yet.
        browser.sign_in(admin)
        assert browser.text("#who-name") == "ops"
        assert not browser.all("#nodes tbody tr")
        story.page("overview-empty")

        # The nodes send their syslog; a reload shows them.
        sent = _send_syslog(service, scenario)
        assert service.wait_for("cdrecon_messages_stored_total", sent) == sent
        browser.driver.refresh()
        node = scenario.calls[0].node
        browser.wait_for(f'#nodes tr[data-host="{node}"]')
        story.page("overview-nodes")

        # Reconciliation page: nothing run yet; import the MN history with the form.
        story.click("#nav-runs")
        assert "No reconciliation run yet" in browser.text("#no-runs")
        history = tmp_path / "participants.json"
        history.write_text(json.dumps(scenario.mn_records))
        browser.wait_for("#history-file").send_keys(str(history))
        story.fill("#history-as-of", _iso(scenario.as_of.isoformat()))
        story.click("#history-submit")
        done = browser.text("#history-done")
        assert f"{len(scenario.mn_records):,} participant" in done
        assert scenario.as_of.strftime("%Y-%m-%dT%H:%M:%S") in done
        story.page("runs-history-imported")

        # A mistyped tolerance is refused next to its field; then the run starts.
        story.fill("#run-from", _iso(start.isoformat()))
        story.fill("#run-until", _iso(end.isoformat()))
        story.fill("#run-tolerance", "fast")
        story.click("#run-submit")
        assert "not a duration" in browser.text("#tolerance-error")
        assert browser.wait_for("#run-from").get_attribute("value") == _iso(start.isoformat())
        story.page("runs-form-error")
        story.fill("#run-tolerance", "2s")
        story.click("#run-submit")
        browser.wait_for("#run-title")
        run_id = int(browser.text("#run-title").split()[-1])
        run = service.get(f"/api/v1/reconciliations/{run_id}").json()
        assert run["counts"]["missing_in_mn"] == len(scenario.lost) > 0
        [gap] = run["gaps"]

        # The gap on the timeline: a band, syslog CDRs inside it, no MN record wholly in it.
        [band] = browser.all("#timeline .gap-band")
        assert f"{gap['count']:,} records lost" in band.get_attribute("textContent")
        left = float(band.get_attribute("x"))
        right = left + float(band.get_attribute("width"))

        def spans(css: str) -> list[tuple[float, float]]:
            return [
                (float(x := bar.get_attribute("x")), float(x) + float(bar.get_attribute("width")))
                for bar in browser.all(css)
            ]

        assert any(a < right and b > left for a, b in spans("#timeline .bars-syslog rect"))
        assert not [(a, b) for a, b in spans("#timeline .bars-mn rect") if a >= left and b <= right]
        assert browser.all("#kept-1 tr.kept-before, #kept-1 tr.kept-after")
        story.page("run")

        # The lost records, from the run's count.
        story.click('#counts a[data-status="missing_in_mn"]')
        browser.wait_for("#items")
        rows = browser.all("#items tbody tr")
        assert {row.get_attribute("data-cdr-id") for row in rows} == set(scenario.lost)
        story.page("run-lost-records")

        # Billing makes the batch: sign out, sign in as billing.
        story.click("#logout")
        browser.sign_in(billing)
        story.click("#nav-billing")
        remaining = browser.all("#remaining-records tbody tr")
        assert {row.get_attribute("data-cdr-id") for row in remaining} == set(scenario.lost)
        story.page("billing-remaining")
        story.click(f"#bill-run-{run_id}")
        created = browser.wait_for("#batch-created").find_element("css selector", ".mono").text
        assert "Nothing remains to bill" in browser.text("#nothing-remains")
        row = browser.wait_for(f"#batch-{created}")
        assert row.find_element("css selector", "[data-field=record_count]").text == str(
            len(scenario.lost)
        )
        story.page("billing-batch")

        # The download is the API's bytes.
        row.find_element("css selector", "a[data-format=csv]").click()
        downloaded = browser.downloaded(f"cdrecon-{created}.csv")
        api = httpx.get(
            f"{service.url}/api/v1/exports/{created}/download?format=csv",
            headers={"Authorization": f"Bearer {billing}"},
        )
        assert api.status_code == 200 and downloaded == api.content
        assert downloaded.count(b"\r\n") == len(scenario.lost) + 1

        # A newer run over the same window lists them lost, and exported.
        newer = service.post(
            "/api/v1/reconciliations",
            token=admin,
            json={"from": start.isoformat(), "until": end.isoformat()},
        )
        assert newer.status_code == 201, newer.text
        browser.open(f"/runs/{newer.json()['id']}?status=missing_in_mn")
        assert browser.text("#counts-billed") == "all in a batch"
        cells = [cell.text for cell in browser.all("#items td[data-field=batch]")]
        assert cells == [f"exported in batch {created}"] * len(scenario.lost)
        story.page("newer-run-exported")

        # An administrator revokes billing's token on the tokens page, then their own,
        # which signs the browser out at once.
        story.click("#logout")
        browser.sign_in(admin)
        story.click('.nav a[href="/tokens"]')
        story.click('tr[data-name="billing-team"] button')
        browser.wait_for('tr.revoked[data-name="billing-team"]')
        refused = httpx.get(
            f"{service.url}/api/v1/exports", headers={"Authorization": f"Bearer {billing}"}
        )
        assert refused.status_code == 401
        story.page("tokens-billing-revoked")
        story.click('tr[data-name="ops"] button')
        assert "You revoked 'ops'" in browser.text("#login-error")
        assert browser.driver.get_cookie("cdrecon_token") is None
        browser.open("/")
        browser.wait_for("#login")
        assert not browser.all("#who")
        story.page("signed-out")

    assert len(story.taken) == 11
