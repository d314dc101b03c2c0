"""The keys that make a re-import of a syslog file add nothing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.ingest.prepare import line_digest

LINE = st.binary(min_size=0, max_size=200)


@given(LINE, LINE)
def test_a_key_tells_any_two_lines_apart(a: bytes, b: bytes) -> None:
    assert (line_digest(a) == line_digest(b)) == (a == b)


def test_keys_of_lines_in_time_order_ascend_in_every_file_layout() -> None:
    # Ascending keys are what keep the unique index growing at its end (migration 0012).
    layouts = (
        "2026-11-26T10:{m:02d}:00.090+00:00 conf-node-01 pexip: body {n}",
        "<134>1 2026-11-26T10:{m:02d}:00.090+00:00 conf-node-01 pexip - - - body {n}",
        "Nov 26 10:{m:02d}:00 conf-node-01 pexip: body {n}",
    )
    for layout in layouts:
        keys = [line_digest(layout.format(m=m, n=m * 7919 % 13).encode()) for m in range(60)]
        assert keys == sorted(keys), layout
