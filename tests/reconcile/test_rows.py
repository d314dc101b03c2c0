"""Pairs settled from rows: exactly the plain matches, and nothing else changes."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.reconcile.items import agreed_row, item_row
from app.reconcile.matching import COMPARED as COMPARED_FIELDS
from app.reconcile.matching import LegView, Status, classify
from app.reconcile.rows import (
    COMPARED,
    CONFERENCE,
    DURATION,
    END,
    ID,
    NODE,
    PROTOCOL,
    START,
    STATE,
    Row,
    agree,
    leg_view,
    split_agreeing,
)
from parsers.mn_record import Kind, compared_text, compared_values
from tests.reconcile.generator import generate
from tests.reconcile.test_matching import TOLERANCE, mn_views, syslog_views

SCENARIO = generate(seed=7)


def as_row(view: LegView, *, with_state: bool) -> Row:
    """The row the repository would read for a view; an MN row ends before the node."""
    row: list[Any] = [None] * (STATE + 1 if with_state else NODE)
    row[ID], row[COMPARED] = view.id, compared_text(view.compared)
    row[PROTOCOL], row[CONFERENCE] = view.protocol, view.conference_name
    row[START], row[END], row[DURATION] = view.start_us, view.end_us, view.duration
    if with_state:
        row[NODE], row[STATE] = view.node, view.state
    return tuple(row)


def row_of(values: dict[str, Any], *, with_state: bool) -> Row:
    """The row the repository would read for a leg's column values."""
    row: list[Any] = [None] * (STATE + 1 if with_state else NODE)
    row[ID] = values["id"]
    row[COMPARED] = compared_text([values.get(f.column) for f in COMPARED_FIELDS])
    row[PROTOCOL], row[CONFERENCE] = values.get("protocol"), values.get("conference_name")
    row[START], row[END], row[DURATION] = values["start_us"], values["end_us"], values["duration"]
    if with_state:
        row[NODE], row[STATE] = values["node"], values["state"]
    return tuple(row)


def cdr_rows() -> list[Row]:
    return [as_row(v, with_state=True) for v in syslog_views(SCENARIO)]


def mn_rows() -> list[Row]:
    return [as_row(v, with_state=False) for v in mn_views(SCENARIO)]


def item_rows(cdrs: list[Row], records: list[Row], *, split: bool) -> list[tuple[Any, ...]]:
    agreed: list[tuple[Row, Row]] = []
    if split:
        agreed, cdrs, records = split_agreeing(cdrs, records, TOLERANCE)
    outcome = classify(
        [leg_view(row) for row in cdrs],
        [leg_view(row) for row in records],
        tolerance_us=TOLERANCE,
        retention_from_us=min(r[START] for r in mn_rows() if r[START] is not None),
        window=None,
        with_gaps=False,
    )
    rows = [agreed_row(cdr, mn) for cdr, mn in agreed] + [item_row(i) for i in outcome.items]
    return sorted(rows)


def test_splitting_off_agreeing_pairs_changes_no_item() -> None:
    cdrs, records = cdr_rows(), mn_rows()
    agreed, _, _ = split_agreeing(cdrs, records, TOLERANCE)
    assert len(agreed) > len(cdrs) // 2
    whole = item_rows(cdrs, records, split=False)
    assert item_rows(cdrs, records, split=True) == whole
    shuffle = random.Random(3)
    shuffle.shuffle(cdrs)
    shuffle.shuffle(records)
    assert item_rows(cdrs, records, split=True) == whole


AT, UNTIL = 10**15, 10**15 + 60_000_000
TEXTS = st.sampled_from([None, "", "Room", "room", "Other"])
# What each column of either side may become: [column, values]. The state is the CDR's own.
FIELDS: list[tuple[str, st.SearchStrategy[Any]]] = [
    *(
        (
            f.column,
            st.sampled_from([None, 5060, 5061]) if f.spec.kind is Kind.INTEGER else TEXTS,
        )
        for f in COMPARED_FIELDS
        if f.name != "protocol"
    ),
    ("protocol", st.sampled_from([None, "", "SIP", "sip", "H323", "BACKPLANE", "Backplane"])),
    ("start_us", st.one_of(st.none(), st.integers(AT - 3 * TOLERANCE, AT + 3 * TOLERANCE))),
    ("end_us", st.one_of(st.none(), st.integers(UNTIL - 3 * TOLERANCE, UNTIL + 3 * TOLERANCE))),
    ("duration", st.one_of(st.none(), st.integers(54, 66))),
    ("state", st.sampled_from(["closed", "open", "failed", "excluded", "connected"])),
]
EDGES = [AT - TOLERANCE, AT + TOLERANCE, UNTIL - TOLERANCE, UNTIL + TOLERANCE]


@st.composite
def pairs(draw: st.DrawFn) -> tuple[Row, Row]:
    """A pair that agrees, with a few of its fields changed on one side, or on both alike."""
    cdr: dict[str, Any] = {"id": "x", "protocol": "SIP"}
    for item in COMPARED_FIELDS:
        if item.name != "protocol":
            cdr[item.column] = 5060 if item.spec.kind is Kind.INTEGER else f"{item.name}-value"
    cdr |= {"start_us": AT, "end_us": UNTIL, "duration": 60, "node": "node", "state": "closed"}
    mn = dict(cdr)
    for _ in range(draw(st.integers(0, 3))):
        column, values = draw(st.sampled_from(FIELDS))
        edges = st.sampled_from(EDGES)
        value = draw(st.one_of(values, edges) if column in ("start_us", "end_us") else values)
        sides = [cdr] if column == "state" else draw(st.sampled_from([[cdr], [mn], [cdr, mn]]))
        for side in sides:
            side[column] = value
    return row_of(cdr, with_state=True), row_of(mn, with_state=False)


@settings(max_examples=1000, deadline=None)
@given(pairs())
def test_a_pair_agrees_exactly_when_it_is_a_plain_match_of_values_alike(
    pair: tuple[Row, Row],
) -> None:
    cdr, mn = pair
    [item] = classify(
        [leg_view(cdr)], [leg_view(mn)], tolerance_us=TOLERANCE, retention_from_us=None
    ).items
    plain = item.status is Status.MATCHED and item.matched_by == "id"
    alike = all(
        a == b or a in (None, "") or b in (None, "")
        for a, b in zip(compared_values(cdr[COMPARED]), compared_values(mn[COMPARED]), strict=True)
    )
    assert agree(cdr, mn, TOLERANCE) == (plain and alike)
