"""Comparing a matched pair: every field both sides hold, each by its declared rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.reconcile.matching import COMPARED, LegView, Status, classify, compare
from app.reconcile.rows import LEG_COLUMNS, leg_view
from parsers.mn_record import COMPARED_COLUMN, Kind, compared_text

TOLERANCE = 2_000_000
AT = 1_795_687_200_000_000
# A leg as both sides hold it: every compared field known.
BASE: dict[str, Any] = {
    "id": "p1",
    "call_uuid": "c1@10.0.0.5",
    "conversation_id": "conv-1",
    "conference_name": "Room",
    "display_name": "Alice",
    "local_alias": "meet.room@example.com",
    "remote_alias": "sip:alice@example.com",
    "protocol": "SIP",
    "call_direction": "in",
    "role": "chair",
    "disconnect_reason": "Call disconnected",
    "remote_address": "10.0.0.5",
    "remote_port": 5060,
    "signalling_node": "10.0.1.11",
    "media_node": "10.0.1.12",
    "proxy_node": "10.0.1.13",
    "system_location": "London",
    "service_type": "conference",
    "service_tag": "vmr-standard",
    "vendor": "Cisco",
    "start_us": AT,
    "end_us": AT + 60_000_000,
    "duration": 60,
}


def view(syslog: bool, **changes: Any) -> LegView:
    """A leg read as the repository reads it: the base values with some changed."""
    values = {**BASE, **changes}
    values[COMPARED_COLUMN] = compared_text([values[f.column] for f in COMPARED])
    row = tuple(values[column] for column in LEG_COLUMNS)
    return leg_view((*row, "node-1", "closed") if syslog else row)


def differences(field: str, ours: Any, theirs: Any) -> set[str]:
    return set(compare(view(True, **{field: ours}), view(False, **{field: theirs}), TOLERANCE))


@pytest.mark.parametrize(
    ("field", "syslog", "mn", "differ"),
    [
        ("call_uuid", "c1@10.0.0.5", "C1@10.0.0.5", True),
        ("conversation_id", "conv-1", "conv-2", True),
        ("conference_name", "Room", "room", False),
        ("conference_name", "Room", "Other room", True),
        ("display_name", "Alice", " alice ", False),
        # Syslog's `Participant` was the alias: it is the MN's remote alias.
        ("display_name", "sip:alice@example.com", "Alice", False),
        ("display_name", "Bob", "Alice", True),
        ("remote_alias", "sip:alice@example.com", "SIP:Alice@example.com", False),
        ("remote_alias", "sip:bob@example.com", "sip:alice@example.com", True),
        ("local_alias", "meet.room@example.com", "meet.other@example.com", True),
        ("local_alias", "meet.room@example.com", "Meet.Room@example.com", True),
        ("protocol", "SIP", "sip", False),
        ("protocol", "SIP", "H323", True),
        ("call_direction", "in", "out", True),
        ("role", "chair", "Chair", False),
        ("role", "chair", "guest", True),
        ("disconnect_reason", "Call disconnected", "Timeout", True),
        ("disconnect_reason", "Call disconnected", "call disconnected", True),
        ("remote_address", "10.0.0.5", "10.0.0.6", True),
        ("remote_port", 5060, 5061, True),
        ("signalling_node", "10.0.1.11", "10.0.1.21", True),
        ("media_node", "10.0.1.12", "10.0.1.22", True),
        ("proxy_node", "10.0.1.13", "10.0.1.23", True),
        ("system_location", "London", "Paris", True),
        ("service_type", "conference", "Conference", False),
        ("service_type", "conference", "gateway", True),
        ("service_tag", "vmr-standard", "vmr-premium", True),
        ("vendor", "Cisco", "Poly", True),
        ("start_us", AT, AT + TOLERANCE, False),
        ("start_us", AT, AT + TOLERANCE + 1, True),
        ("start_us", AT, None, True),
        ("end_us", None, None, False),
        ("duration", 60, 63, False),  # one second, plus the tolerance's two
        ("duration", 60, 64, True),
        ("duration", 60, None, True),
    ],
)
def test_each_field_is_compared_by_its_rule(field: str, syslog: Any, mn: Any, differ: bool) -> None:
    name = {"start_us": "start_time", "end_us": "end_time"}.get(field, field)
    assert differences(field, syslog, mn) == ({name} if differ else set())


@pytest.mark.parametrize("field", [f.name for f in COMPARED])
@pytest.mark.parametrize("empty", [None, ""])
def test_a_value_only_one_side_knows_is_no_difference(field: str, empty: str | None) -> None:
    known = BASE[field]
    if empty == "" and not isinstance(known, str):
        return
    assert differences(field, empty, known) == set()
    assert differences(field, known, empty) == set()


def test_every_field_both_sides_hold_but_the_id_is_compared() -> None:
    names = {f.name for f in COMPARED} | {"start_time", "end_time", "duration"}
    assert names == {name.replace("_us", "_time") for name in BASE} - {"id"}


def test_a_pair_differing_in_any_compared_field_is_mismatched_listing_them() -> None:
    cdr = view(True, disconnect_reason="Timeout", vendor="Poly", remote_port=5070)
    [item] = classify([cdr], [view(False)], tolerance_us=TOLERANCE, retention_from_us=None).items
    assert item.status is Status.MISMATCHED
    assert item.differences == {
        "disconnect_reason": {"syslog": "Timeout", "mn": "Call disconnected"},
        "remote_port": {"syslog": 5070, "mn": 5060},
        "vendor": {"syslog": "Poly", "mn": "Cisco"},
    }


NAMES = st.sampled_from([None, "", "Alice", "alice", " Alice ", "Bob", "sip:alice@example.com"])
VALUES = st.sampled_from([None, "", "x", "X", "y"])


@st.composite
def legs(draw: st.DrawFn) -> dict[str, Any]:
    """Values for a leg: names from a small pool of look-alikes, other values alike."""
    values: dict[str, Any] = {}
    for item in COMPARED:
        if item.spec.kind is Kind.INTEGER:
            values[item.name] = draw(st.sampled_from([None, 5060, 5061]))
        else:
            names = item.name in ("display_name", "remote_alias")
            values[item.name] = draw(NAMES if names else VALUES)
    for column in ("start_us", "end_us"):
        values[column] = draw(st.sampled_from([None, AT, AT + TOLERANCE, AT + TOLERANCE + 1]))
    values["duration"] = draw(st.sampled_from([None, 60, 63, 64]))
    return values


@given(legs(), legs())
def test_comparing_is_symmetric_and_a_leg_agrees_with_itself(
    ours: dict[str, Any], theirs: dict[str, Any]
) -> None:
    a, b = view(True, **ours), view(True, **theirs)
    assert set(compare(a, b, TOLERANCE)) == set(compare(b, a, TOLERANCE))
    assert compare(a, a, TOLERANCE) == {}
