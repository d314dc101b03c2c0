"""The run page's pure parts: item rows, the coverage block, any status, escaping."""

from __future__ import annotations

from app.auth.tokens import Principal, Scope
from app.web.moment import Moment
from app.web.overview import run_card, run_url
from app.web.render import render
from app.web.run import RunPage, coverage_rows, item_row


def test_an_item_row_prefers_syslog_and_names_each_alias_once() -> None:
    row = item_row(
        {
            "status": "mismatched",
            "conference_name": "room-1",
            "node": "conf-1",
            "cdr_id": "c1",
            "mn_id": "m1",
            "differences": {"end_time": {"syslog": "2026-11-20T10:00:00Z", "mn": None}},
            "cdr": {
                "display_name": "Alice",
                "remote_alias": "alice@example.com",
                "local_alias": "meet@example.com",
                "start": "2026-11-20T09:00:00Z",
                "end": "2026-11-20T10:00:00Z",
                "duration": 3600,
            },
            "mn": {"display_name": "A.", "remote_alias": "alice@example.com", "local_alias": None},
        }
    )
    assert row.participant == "Alice"
    assert row.aliases == ["alice@example.com", "meet@example.com"]
    assert row.duration == "1:00:00"
    assert row.start == Moment.of("2026-11-20T09:00:00Z")
    assert row.differences == [("end time", "2026-11-20T10:00:00Z", "\N{EN DASH}")]


def test_a_record_only_the_mn_has_shows_the_mn_side() -> None:
    row = item_row(
        {
            "status": "missing_in_syslog",
            "conference_name": "room-2",
            "node": None,
            "cdr_id": None,
            "mn_id": "m2",
            "differences": None,
            "cdr": None,
            "mn": {
                "display_name": "bob@example.com",
                "remote_alias": "bob@example.com",
                "local_alias": None,
                "start": None,
                "end": "2026-11-20T10:00:00Z",
                "duration": None,
            },
        }
    )
    assert (row.participant, row.aliases, row.start, row.duration) == (
        "bob@example.com",
        [],
        None,
        None,
    )
    assert row.end == Moment.of("2026-11-20T10:00:00Z")


def test_coverage_shows_whatever_the_summary_holds() -> None:
    assert coverage_rows(None) is None
    assert coverage_rows({"history_from": "2026-11-01T00:00:00Z", "complete": False}) == [
        ("history from", "2026-11-01T00:00:00Z"),
        ("complete", "no"),
    ]
    assert coverage_rows({"nodes": ["a", "b"], "records": 1234}) == [
        ("nodes", "a, b"),
        ("records", "1,234"),
    ]


def test_the_page_lists_a_status_it_does_not_know_and_escapes_everything() -> None:
    hostile = '<script>alert("x")</script>'
    card = run_card(
        {"id": 3, "counts": {"matched": 1, "brand_new": 2}, "gaps": [], "from": hostile}
    )
    view = RunPage(
        id=3,
        created_at=None,
        created_by=hostile,
        start=card.start,
        until=None,
        tolerance_seconds=2.0,
        counts=[("missing_in_mn", 0), *card.counts],
        gaps=[],
        kept=[],
        timeline=None,
        exported=0,
        coverage=coverage_rows({hostile: hostile}),
        status_urls={status: run_url(3, status) for status, _ in card.counts}
        | {"missing_in_mn": run_url(3, "missing_in_mn")},
        page_url=run_url(3),
        status="brand_new",
        limit=50,
        items=[],
        differences=False,
        total=2,
        next_url=None,
        first_url=None,
        json_url="/api/v1/reconciliations/3/items?status=brand_new",
    )
    html = render("run.html", principal=Principal(hostile, Scope.BILLING), view=view).body
    text = html.decode()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert 'data-status="brand_new"' in text and "brand new" in text
    assert 'href="/runs/3?status=brand_new"' in text
    assert 'id="coverage"' in text
    assert "This run has no record brand new" in text


def _page(counts: dict[str, int]) -> str:
    card = run_card({"id": 4, "counts": counts, "gaps": []})
    view = RunPage(
        id=4,
        created_at=None,
        created_by="watch",
        start=card.start,
        until=None,
        tolerance_seconds=2.0,
        counts=[("missing_in_mn", card.missing_in_mn), *card.counts],
        gaps=[],
        kept=[],
        timeline=None,
        exported=0,
        coverage=[],
        status_urls={status: run_url(4, status) for status, _ in card.counts}
        | {"missing_in_mn": run_url(4, "missing_in_mn")},
        page_url=run_url(4),
        status=None,
        limit=50,
        items=[],
        differences=False,
        total=0,
        next_url=None,
        first_url=None,
        json_url="/api/v1/reconciliations/4/items",
    )
    html = render("run.html", principal=Principal("b", Scope.BILLING), view=view).body
    return html.decode()


def test_a_run_with_unconfirmed_records_says_they_are_neither_alerted_nor_exported() -> None:
    text = _page({"matched": 18, "missing_in_mn": 1, "unconfirmed": 2})
    assert 'data-status="unconfirmed"' in text and "missing in MN, unconfirmed" in text
    assert 'id="unconfirmed-note"' in text
    assert "2 records missing in MN are unconfirmed" in text
    assert "incremental pull" in text and "pull-history --since" in text
    assert 'id="unconfirmed-note"' not in _page({"matched": 18, "missing_in_mn": 1})
    assert 'id="unconfirmed-note"' not in _page({"matched": 18, "unconfirmed": 0})
