"""Pairs settled from rows: exactly the plain matches, and nothing else changes."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.reconcile.items import agreed_row, item_row
from app.reconcile.matching import COMPARED, LegView, Status, classify
from app.reconcile.rows import (
    COMPARED_VALUES,
    DURATION,
    END,
    ID,
    LEG_COLUMNS,
    NODE,
    PROTOCOL,
    START,
    STATE,
    Row,
    agree,
    leg_view,
    split_agreeing,
)
from parsers.mn_record import Kind
from tests.reconcile.generator import generate
from tests.reconcile.test_matching import TOLERANCE, mn_views, syslog_views

SCENARIO = generate(seed=7)


def as_row(view: LegView, *, with_state: bool) -> Row:
    """The row the repository would read for a view; an MN row ends before the node."""
    row: list[Any] = [None] * (STATE + 1 if with_state else NODE)
    row[ID], row[COMPARED_VALUES] = view.id, view.compared
    row[START], row[END], row[DURATION] = view.start_us, view.end_us, view.duration
    if with_state:
        row[NODE], row[STATE] = view.node, view.state
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
# What each field of either side may become: [index, values]. The state is the CDR's own.
FIELDS: list[tuple[int, st.SearchStrategy[Any]]] = [
    *(
        (
            LEG_COLUMNS.index(f.column),
            st.sampled_from([None, 5060, 5061]) if f.spec.kind is Kind.INTEGER else TEXTS,
        )
        for f in COMPARED
        if f.name != "protocol"
    ),
    (PROTOCOL, st.sampled_from([None, "", "SIP", "sip", "H323", "BACKPLANE", "Backplane"])),
    (START, st.one_of(st.none(), st.integers(AT - 3 * TOLERANCE, AT + 3 * TOLERANCE))),
    (END, st.one_of(st.none(), st.integers(UNTIL - 3 * TOLERANCE, UNTIL + 3 * TOLERANCE))),
    (DURATION, st.one_of(st.none(), st.integers(54, 66))),
    (STATE, st.sampled_from(["closed", "open", "failed", "excluded", "connected"])),
]
EDGES = [AT - TOLERANCE, AT + TOLERANCE, UNTIL - TOLERANCE, UNTIL + TOLERANCE]


@st.composite
def pairs(draw: st.DrawFn) -> tuple[Row, Row]:
    """A pair that agrees, with a few of its fields changed on one side, or on both alike."""
    cdr: list[Any] = [None] * (STATE + 1)
    cdr[ID], cdr[PROTOCOL] = "x", "SIP"
    for item in COMPARED:
        if item.name != "protocol":
            index = LEG_COLUMNS.index(item.column)
            cdr[index] = 5060 if item.spec.kind is Kind.INTEGER else f"{item.name}-value"
    cdr[START], cdr[END], cdr[DURATION] = AT, UNTIL, 60
    cdr[NODE], cdr[STATE] = "node", "closed"
    mn = cdr[:NODE]
    for _ in range(draw(st.integers(0, 3))):
        index, values = draw(st.sampled_from(FIELDS))
        value = draw(st.one_of(values, st.sampled_from(EDGES)) if index in (START, END) else values)
        sides = [cdr] if index == STATE else draw(st.sampled_from([[cdr], [mn], [cdr, mn]]))
        for side in sides:
            side[index] = value
    return tuple(cdr), tuple(mn)


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
        for a, b in zip(cdr[COMPARED_VALUES], mn[COMPARED_VALUES], strict=True)
    )
    assert agree(cdr, mn, TOLERANCE) == (plain and alike)
