"""What the parsers hand the store fits it: Pexip values within the `events` columns, no NUL.

(The syslog header fields are checked against the `messages` columns in test_syslog.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import String

from app.cdr.extract import EVENT_COLUMNS, NotPexip, extract
from app.db.models import events
from parsers.pexip import parse_pexip
from parsers.syslog import parse_syslog

TIME = "2026-03-02 10:00:00,000"
JOIN = 'Level="INFO" Name="administrator.conference" Message="Participant has joined."'


@pytest.mark.parametrize(
    ("pairs", "kept", "truncated"),
    [
        ('Participant-id="' + "p" * 128 + '"', {"participant-id": "p" * 128}, False),
        ('Participant-id="' + "p" * 129 + '" Call-id="c"', {"call-id": "c"}, True),
        ('Level="' + "L" * 17 + '" Message="m"', {"message": "m"}, True),
        ('Name="' + "n" * 129 + '" Message="m"', {"message": "m"}, True),
        ('Level="' + "L" * 16 + '"', {"level": "L" * 16}, False),
        # Only the bounded keys: Message, Call-id and Conference are text of any length.
        ('Message="' + "m" * 5000 + '"', {"message": "m" * 5000}, False),
        (
            'Call-id="a\x00b" Conference="\x00"',
            {"call-id": "a\ufffdb", "conference": "\ufffd"},
            False,
        ),
    ],
)
def test_values_too_long_to_store_are_dropped_and_flagged(
    pairs: str, kept: dict[str, str], truncated: bool
) -> None:
    event = parse_pexip(f"{TIME} {pairs}")
    assert dict(event.fields) == kept
    assert (event.level, event.name, event.message) == (
        kept.get("level"),
        kept.get("name"),
        kept.get("message"),
    )
    assert event.truncated is truncated


def test_a_dropped_value_keeps_the_rest_of_a_cut_line() -> None:
    event = parse_pexip(
        f'{TIME} Participant-id="{"p" * 200}" Call-id="c" Detail="cut', partial=True
    )
    assert dict(event.fields) == {"call-id": "c"}
    assert event.truncated


def test_the_limits_are_the_events_columns() -> None:
    lengths = {column.name: getattr(column.type, "length", None) for column in events.c}
    assert lengths["participant_id"] == 128


def _text_limits() -> dict[int, int | None]:
    """Position in an event row -> the length limit of its text column (None: Text)."""
    return {
        index: events.c[name].type.length
        for index, name in enumerate(EVENT_COLUMNS)
        if isinstance(events.c[name].type, String)
    }


TEXT_LIMITS = _text_limits()
hostile_values = st.lists(
    st.sampled_from(["\x00", "p" * 100, "x", '\\"', " ", "é"]) | st.text(max_size=4),
    max_size=6,
).map("".join)
keys = st.sampled_from(["Participant-id", "Level", "Name", "Message", "Call-id", "Conference"])


@settings(max_examples=300, deadline=None)
@given(
    host=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=300),
    pairs=st.lists(st.tuples(keys, hostile_values), min_size=1, max_size=6),
    cut=st.integers(0, 40),
)
def test_any_call_event_row_fits_the_events_table(
    host: str, pairs: list[tuple[str, str]], cut: int
) -> None:
    body = f"{TIME} {JOIN} " + " ".join(f'{key}="{value}"' for key, value in pairs)
    body = body[: len(body) - cut]
    frame = f"2026-03-02T10:00:00Z {host} {body}".encode()
    message = parse_syslog(frame, received_at=datetime(2026, 3, 2, tzinfo=UTC))
    try:
        call_event = extract(frame, message.msg_offset, message.hostname or "10.0.0.1")
    except NotPexip:
        return
    if call_event is None:
        return
    row = call_event.as_tuple(1)
    for index, limit in TEXT_LIMITS.items():
        value = row[index]
        if isinstance(value, str):
            assert "\x00" not in value, (EVENT_COLUMNS[index], value)
            assert limit is None or len(value) <= limit, (EVENT_COLUMNS[index], len(value))
