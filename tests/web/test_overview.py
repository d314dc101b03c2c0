"""The overview's pure parts: silence, durations, run cards, batch rows, escaping."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from app.auth.tokens import Principal, Scope
from app.ingest.schemas import Stats
from app.web.moment import Moment
from app.web.overview import (
    GapRow,
    NodeRow,
    Overview,
    export_row,
    hms,
    run_card,
    silence,
)
from app.web.render import render

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_a_node_is_silent_only_after_fifteen_minutes() -> None:
    assert silence(NOW - timedelta(minutes=15), NOW) is None
    assert silence(NOW - timedelta(minutes=15, seconds=1), NOW) == "15 min"
    assert silence(NOW - timedelta(hours=3, minutes=5), NOW) == "3 h 05 min"
    assert silence(NOW - timedelta(days=3, hours=4), NOW) == "3 d 4 h"
    assert silence(NOW + timedelta(minutes=1), NOW) is None  # clock skew is not silence


def test_durations_read_as_hours_minutes_seconds() -> None:
    assert [hms(s) for s in (0, 59, 3600, 70054, 360000)] == [
        "0:00:00",
        "0:00:59",
        "1:00:00",
        "19:27:34",
        "100:00:00",
    ]


def test_times_show_to_the_second_in_utc_and_keep_full_precision() -> None:
    moment = Moment.of("2026-11-20T13:14:38.123456Z")
    assert moment == Moment("2026-11-20T13:14:38Z", "2026-11-20T13:14:38.123456Z")
    assert Moment.of(datetime(2026, 1, 1, 1, tzinfo=UTC)) == Moment(
        "2026-01-01T01:00:00Z", "2026-01-01T01:00:00Z"
    )
    assert Moment.of("not a time") == Moment("not a time", "not a time")
    assert Moment.of(None) is None


def test_a_run_card_puts_missing_in_mn_apart_and_keeps_unknown_statuses() -> None:
    card = run_card(
        {
            "id": 7,
            "created_at": "2026-11-26T10:00:00Z",
            "created_by": "ops",
            "from": "2026-11-20T00:00:00Z",
            "until": "2026-11-21T00:00:00Z",
            "counts": {"matched": 5, "missing_in_mn": 3, "brand_new": 1},
            "gaps": [
                {
                    "from": "2026-11-20T13:00:00Z",
                    "until": "2026-11-20T14:00:00Z",
                    "count": 3,
                    "nodes": ["b", "a"],
                }
            ],
        }
    )
    assert card.missing_in_mn == 3
    assert ("missing_in_mn", 3) not in card.counts
    assert card.counts[0] == ("matched", 5)
    assert ("mismatched", 0) in card.counts and card.counts[-1] == ("brand_new", 1)
    assert card.gaps == [
        GapRow(Moment.of("2026-11-20T13:00:00Z"), Moment.of("2026-11-20T14:00:00Z"), 3, ["b", "a"])
    ]
    assert card.missing_url == "/api/v1/reconciliations/7/items?status=missing_in_mn"


def test_a_batch_row_links_both_download_formats() -> None:
    row = export_row(
        {
            "id": "exp_1",
            "created_by": "billing",
            "created_at": "2026-11-26T10:00:00Z",
            "source": {"run_id": 2, "status": "missing_in_mn"},
            "record_count": 4,
            "total_duration": 3661,
            "sha256": {"csv": "c" * 64, "jsonl": "j" * 64},
        }
    )
    assert row.source == "run 2: missing in MN"
    assert row.duration_text == "1:01:01"
    assert row.downloads == [
        ("CSV", "/api/v1/exports/exp_1/download?format=csv", "c" * 64),
        ("JSONL", "/api/v1/exports/exp_1/download?format=jsonl", "j" * 64),
    ]


def test_every_value_on_the_page_is_escaped() -> None:
    hostile = '<script>alert("x")</script>'
    seen = Moment.of(NOW)
    assert seen is not None
    view = Overview(
        principal=Principal(hostile, Scope.BILLING),
        now=seen,
        stats=Stats(
            messages=1, parse_failures=0, events=0, cdrs=0, nodes=1, queued=0, derive_pending=0
        ),
        nodes=[NodeRow(hostile, hostile, "tcp", seen, "20 min", 1, 0)],
        silent_nodes=1,
        runs=[],
        exports=[],
    )
    html = render("overview.html", view=view).body.decode()
    assert "<script>" not in html
    assert html.count("&lt;script&gt;") == 4  # token name, host (cell and attribute), peer
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert render("login.html", error=hostile).body.decode().count("<script>") == 0


def test_the_disk_tile_reads_in_binary_units_and_the_budget_warns_above_the_nodes() -> None:
    from app.config import Settings
    from app.retention.budget import judge
    from app.web.overview import disk_tile, size_text

    assert [size_text(n) for n in (512, 2048, 5 * 1024**3 + 1024**3 // 2)] == [
        "512 B",
        "2.0 KiB",
        "5.5 GiB",
    ]
    tight = disk_tile(judge(3 * 1024**3, 1024**3, Settings()))
    assert (tight.size, tight.free) == ("3.0 GiB", "1.0 GiB") and tight.warnings
    view = Overview(
        principal=Principal("ops", Scope.ADMIN),
        now=Moment("2026-11-26T12:00:00Z", "2026-11-26T12:00:00Z"),
        stats=Stats(
            messages=1, parse_failures=0, events=0, cdrs=0, nodes=0, queued=0, derive_pending=0
        ),
        nodes=[],
        silent_nodes=0,
        runs=[],
        exports=[],
        disk=tight,
    )
    html = render("overview.html", view=view).body.decode()
    assert '<dd id="stat-disk">3.0 GiB (1.0 GiB)</dd>' in html
    assert 'id="disk-alert"' in html and "CDRECON_DISK_MIN_FREE_BYTES" in html
    roomy = disk_tile(judge(3 * 1024**3, 10 * 1024**3, Settings()))
    html = render("overview.html", view=replace(view, disk=roomy)).body.decode()
    assert 'id="disk-alert"' not in html
