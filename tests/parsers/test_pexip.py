"""Tests for parsers.pexip: the real sample lines, every gotcha of the format, and properties."""

import dataclasses
import pickle
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parsers import pexip
from parsers.limits import LEVEL_MAX, NAME_MAX, PARTICIPANT_ID_MAX
from parsers.pexip import (
    PARTICIPANT_ATTEMPTING,
    PARTICIPANT_DISCONNECTED,
    PARTICIPANT_JOINED,
    PexipEvent,
    PexipParseError,
    find_pexip_body,
    is_pexip_body,
    parse_pexip,
    split_cr,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "pexip"
# ID -> full line as received (syslog-side prefix included); see fixtures/pexip/SOURCE.md.
LINES = dict(
    line.split("\t", 1) for line in (FIXTURES / "lines.txt").read_text("utf-8").splitlines()
)

T = "2017-07-09 13:45:29,919"
T0 = datetime(2017, 7, 9, 13, 45, 29, 919000, tzinfo=UTC)
KEY_HELP = "a key (letters, digits, '-', '_' or '.')"


def body_of(line: str) -> str:
    start = find_pexip_body(line)
    assert start >= 0
    return line[start:]


def parse_error(body: str) -> PexipParseError:
    with pytest.raises(PexipParseError) as caught:
        parse_pexip(body)
    return caught.value


def scanned_or_none(body: str, partial: bool) -> PexipEvent | None:
    """What parse_pexip() returns without running the grammar (None: it runs the grammar)."""
    event = pexip._scan_simple(body)
    if event is None:
        scanned = pexip._scan_general(body)
        if scanned is not None and (partial or scanned[1] is None):
            event = scanned[0]
    return event


def grammar_or_none(body: str, partial: bool) -> PexipEvent | None:
    try:
        return pexip._parse_grammar(body, partial)
    except PexipParseError:
        return None


# --------------------------------------------------------------------------------------------
# The real lines (pexip-format.md section 2)
# --------------------------------------------------------------------------------------------

# ID -> (where the body starts in the full line, the fields of parse_pexip(body))
REAL_COMPLETE = {
    "S2.1": (
        len("2017-07-09T13:45:29.919+00:00 conf2 "),
        {
            "level": "INFO",
            "name": "support.externalpolicy",
            "message": "External policy request",
            "method": "GET",
            "url": "http://policy.pex.me/policy/v1/participant/avatar/nigel%40pexip.vc"
            "?…&role=chair&location=Washington",
            "timeout": "5",
            "request-id": "6d6cc41c-bdc9-486e-a654-831355487a63",
        },
    ),
    "S2.2": (
        len("2017-07-09T13:45:29.920+00:00 conf2 "),
        {
            "level": "INFO",
            "pid": "2166",
            "module": "messagepublisher",
            "function": "send_message",
            "message": "Publishing message",
            "queue": "management_queue",
            "name": "participant_connected",
        },
    ),
    "S3": (
        len("2026-05-14T23:38:44.061+00:00 internal "),
        {
            "level": "INFO",
            "name": "administrator.conference",
            "message": PARTICIPANT_ATTEMPTING,
            "conferencealias": "main-vmr",
            "participant": "DENNIS J LORIST",
            "protocol": "API",
            "direction": "in",
            "remote-address": "10.0.1.12",
            "participant-id": "e15d0b7a-...",
            "location": "syd",
        },
    ),
}


@pytest.mark.parametrize("line_id", sorted(REAL_COMPLETE))
def test_real_line_parses_to_its_fields(line_id: str) -> None:
    start, fields = REAL_COMPLETE[line_id]
    line = LINES[line_id]
    assert find_pexip_body(line) == start
    assert is_pexip_body(line)
    event = parse_pexip(line[start:])
    assert dict(event.fields) == fields
    assert list(event.fields) == list(fields)  # order of appearance
    assert (event.level, event.name, event.message) == (
        fields["level"],
        fields["name"],
        fields["message"],
    )
    assert event.time == datetime.fromisoformat(line[start : start + 23] + "+00:00")
    assert event.time.tzinfo is UTC
    assert not event.truncated


def test_real_developer_line_has_name_after_message() -> None:
    event = parse_pexip(body_of(LINES["S2.2"]))
    assert event.time == T0  # the body's originating time, not the header's .920
    assert list(event.fields)[1:4] == ["pid", "module", "function"]
    assert event.name == "participant_connected"


# ID -> (where the body starts, strict error (column, expected), fields kept with partial=True)
REAL_TRUNCATED = {
    # The excerpt stops inside the unescaped JSON of Content="…".
    "S2.3": (
        len("2017-07-09T13:45:29.921+00:00 mgr "),
        "'\"' closing the value of key 'Content'",
        {
            "level": "INFO",
            "pid": "2056",
            "module": "messagesubscriber",
            "function": "_read_message_loop",
            "message": "Received message",
        },
    ),
    # plt's comment ends with ` ...`: as far as it is a body, that is a key cut short.
    "S1": (len("us-mns-wrk1 "), "'=\"' after key '...'", {"level": "INFO"}),
}


@pytest.mark.parametrize("line_id", sorted(REAL_TRUNCATED))
def test_real_truncated_line(line_id: str) -> None:
    start, expected, fields = REAL_TRUNCATED[line_id]
    line = LINES[line_id]
    assert find_pexip_body(line) == start
    body = line[start:]
    error = parse_error(body)
    assert (error.column, error.expected, error.truncated) == (len(body) + 1, expected, True)
    event = parse_pexip(body, partial=True)
    assert dict(event.fields) == fields
    assert event.truncated
    assert event.time == datetime.fromisoformat(body[:23] + "+00:00")


def test_real_line_name_absent() -> None:
    event = parse_pexip(body_of(LINES["S2.3"]), partial=True)
    assert event.name is None
    assert event.message == "Received message"


# --------------------------------------------------------------------------------------------
# Gotchas, one line each
# --------------------------------------------------------------------------------------------

# id -> (body after the timestamp and a space, expected fields)
GOTCHAS: dict[str, tuple[str, dict[str, str]]] = {
    "escaped-quotes": (
        r'Participant="Say \"hi\" to \"Bob\"" Level="INFO"',
        {"participant": 'Say "hi" to "Bob"', "level": "INFO"},
    ),
    # Only \" is an escape: a double backslash stays two backslashes.
    "double-backslash-kept": (r'Path="C:\\dir\\x" A="b"', {"path": r"C:\\dir\\x", "a": "b"}),
    "backslash-elsewhere-kept": (r'Re="\d+\s" A="b"', {"re": r"\d+\s", "a": "b"}),
    # A value cannot end with a backslash: its closing quote reads as escaped, so the value runs
    # on to the next closing quote.
    "backslash-before-closing-quote": (r'A="x\" B="y"', {"a": 'x" B="y'}),
    "cr-marker-kept": (
        'Detail="INVITE sip:a@b SIP/2.0^MVia: SIP/2.0/TLS 10.0.0.1^M^M" A="b"',
        {"detail": "INVITE sip:a@b SIP/2.0^MVia: SIP/2.0/TLS 10.0.0.1^M^M", "a": "b"},
    ),
    "cr-marker-at-value-start": (
        'Detail="^MSIP/2.0 200 OK^MContent-Length: 0^M"',
        {"detail": "^MSIP/2.0 200 OK^MContent-Length: 0^M"},
    ),
    # A quote followed by a space does not end a value unless `key="` follows: SIP display
    # names survive (pexip-log-tools special-cases values starting with ^M for this).
    "sip-display-name": (
        'Detail="^MFrom: "Alice Example" <sip:alice@example.com>;tag=1^MTo: <sip:b@c>^M" A="b"',
        {
            "detail": '^MFrom: "Alice Example" <sip:alice@example.com>;tag=1^MTo: <sip:b@c>^M',
            "a": "b",
        },
    ),
    "quotes-in-display-name": (
        'Participant="Bob "the builder" Smith" Protocol="SIP"',
        {"participant": 'Bob "the builder" Smith', "protocol": "SIP"},
    ),
    "unescaped-json": (
        'Content="{"protocol": "MSSIP", "parent_uuid": "", "is_presenting": false}" A="b"',
        {"content": '{"protocol": "MSSIP", "parent_uuid": "", "is_presenting": false}', "a": "b"},
    ),
    "pretty-json": (
        'Content="{ "a" : "b" , "c" : [ "d" ] }" A="b"',
        {"content": '{ "a" : "b" , "c" : [ "d" ] }', "a": "b"},
    ),
    "python-repr-payload": (
        'Content="b\'{"x": True}\'" A="b"',
        {"content": "b'{\"x\": True}'", "a": "b"},
    ),
    # The documented limitation: `" key="` inside a value cannot be told from a pair boundary.
    "value-containing-quote-space-key-is-cut": (
        'Detail="say "x" Role="y" end" Next="z"',
        {"detail": 'say "x', "role": 'y" end', "next": "z"},
    ),
    "empty-values": ('Alias="" Detail="" A="b"', {"alias": "", "detail": "", "a": "b"}),
    "empty-last-value": ('A="b" Detail=""', {"a": "b", "detail": ""}),
    "whitespace-values": ('A=" " B="  x  "', {"a": " ", "b": "  x  "}),
    "utf8": (
        'Participant="Zoë Ångström" Conference="会議室 🎥" Vendor="Ärzte-Türk"',
        {"participant": "Zoë Ångström", "conference": "会議室 🎥", "vendor": "Ärzte-Türk"},
    ),
    "keys-lower-cased": (
        'Call-id="a" Conference-ID="b" REMOTE-ADDRESS="c"',
        {"call-id": "a", "conference-id": "b", "remote-address": "c"},
    ),
    "duplicate-keys-first-wins": (
        'Call-id="first" Call-Id="second" call-id="third" Level="INFO" LEVEL="x"',
        {"call-id": "first", "level": "INFO"},
    ),
    "keys-with-dots-underscores-digits": (
        'X.Y_z-1="v" _a="w" 2="x" a..b="y"',
        {"x.y_z-1": "v", "_a": "w", "2": "x", "a..b": "y"},
    ),
    "developer-line": (
        'Level="INFO" Pid="2166" Module="messagepublisher" Function="send_message"'
        ' Message="Publishing message" Queue="management_queue" Name="participant_connected"',
        {
            "level": "INFO",
            "pid": "2166",
            "module": "messagepublisher",
            "function": "send_message",
            "message": "Publishing message",
            "queue": "management_queue",
            "name": "participant_connected",
        },
    ),
    "trailing-cr": ('A="b"\r', {"a": "b"}),
    "trailing-crlf-and-spaces": ('A="b"  \r\n', {"a": "b"}),
    "tabs-and-runs-of-spaces": ('A="b"\tC="d"   E="f"', {"a": "b", "c": "d", "e": "f"}),
    "unicode-whitespace-separator": ('A="b"\u00a0C="d"', {"a": "b", "c": "d"}),
    "equals-and-quote-in-value": (
        'Url="http://x/?a="1"&b=2" A="b"',
        {"url": 'http://x/?a="1"&b=2', "a": "b"},
    ),
    "key-like-text-without-space": ('A="x"B="y"', {"a": 'x"B="y'}),
}


@pytest.mark.parametrize("case", sorted(GOTCHAS))
def test_gotcha(case: str) -> None:
    rest, fields = GOTCHAS[case]
    body = f"{T} {rest}"
    event = parse_pexip(body)
    assert dict(event.fields) == fields
    assert list(event.fields) == list(fields)
    assert event.time == T0
    assert not event.truncated
    # The reference grammar agrees, whichever path parse_pexip took; so does the builder a
    # simple line's shape gets once it is seen again.
    assert pexip._parse_grammar(body, False) == event
    assert parse_pexip(body) == event


def test_name_absent_and_after_message() -> None:
    event = parse_pexip(f'{T} Level="WARNING" Message="{PARTICIPANT_JOINED}" Name="x.y"')
    assert (event.level, event.message, event.name) == ("WARNING", PARTICIPANT_JOINED, "x.y")
    event = parse_pexip(f'{T} Message="{PARTICIPANT_DISCONNECTED}" Detail="Call disconnected"')
    assert (event.level, event.name, event.message) == (None, None, PARTICIPANT_DISCONNECTED)
    assert event.get("Detail") == "Call disconnected"


def test_get_is_case_insensitive() -> None:
    event = parse_pexip(f'{T} Call-id="abc" Participant-Id="p1"')
    assert event.get("Call-Id") == event.get("CALL-ID") == event.get("call-id") == "abc"
    assert event.get("participant-id") == "p1"
    assert event.get("Conference") is None
    assert event.get("Conference", "") == ""


def test_split_cr() -> None:
    detail = parse_pexip(f'{T} Detail="^MINVITE sip:a@b SIP/2.0^MVia: x^M^M"').fields["detail"]
    assert split_cr(detail) == ["", "INVITE sip:a@b SIP/2.0", "Via: x", "", ""]
    assert "^M".join(split_cr(detail)) == detail
    assert split_cr("no marker") == ["no marker"]


def test_event_is_frozen_and_hashable() -> None:
    event = parse_pexip(f'{T} Level="INFO" A="b"')
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.level = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.fields["a"] = "c"  # type: ignore[index]
    assert hash(event) == hash(parse_pexip(f'{T} Level="INFO" A="b"'))
    assert event == PexipEvent(T0, "INFO", None, None, {"level": "INFO", "a": "b"})


def test_message_constants() -> None:
    assert PARTICIPANT_ATTEMPTING == "Participant attempting to join conference."
    assert PARTICIPANT_JOINED == "Participant has joined."
    assert PARTICIPANT_DISCONNECTED == "Participant has disconnected."


# --------------------------------------------------------------------------------------------
# Errors: column, expectation, truncation
# --------------------------------------------------------------------------------------------

# id -> (body, column, expected, truncated)
ERRORS: dict[str, tuple[str, int, str, bool]] = {
    "empty": ("", 1, "year 0001-9999", True),
    "garbage": ("hello world", 1, "year 0001-9999", False),
    "leading-space": (f' {T} A="b"', 1, "year 0001-9999", False),
    "syslog-header-left-on": (f'conf2 {T} A="b"', 1, "year 0001-9999", False),
    "year-0000": ('0000-07-09 13:45:29,919 A="b"', 1, "year 0001-9999", False),
    "month-13": ('2017-13-09 13:45:29,919 A="b"', 6, "month 01-12", False),
    "month-00": ('2017-00-09 13:45:29,919 A="b"', 6, "month 01-12", False),
    "day-32": ('2017-07-32 13:45:29,919 A="b"', 9, "day 01-31", False),
    "feb-29-not-leap": ('2017-02-29 13:45:29,919 A="b"', 9, "day 01-28 for 2017-02", False),
    "april-31": ('2017-04-31 13:45:29,919 A="b"', 9, "day 01-30 for 2017-04", False),
    "hour-24": ('2017-07-09 24:00:00,000 A="b"', 12, "hour 00-23", False),
    "minute-60": ('2017-07-09 13:60:29,919 A="b"', 15, "minute 00-59", False),
    "second-60": ('2017-07-09 13:45:60,919 A="b"', 18, "second 00-59", False),
    "iso-t-separator": ('2017-07-09T13:45:29,919 A="b"', 11, "' '", False),
    "dot-before-millis": ('2017-07-09 13:45:29.919 A="b"', 20, "','", False),
    "no-millis": ('2017-07-09 13:45:29 A="b"', 20, "','", False),
    "two-digit-millis": ('2017-07-09 13:45:29,91 A="b"', 21, "3-digit milliseconds", False),
    "slashes-in-date": ('2017/07/09 13:45:29,919 A="b"', 5, "'-'", False),
    "no-space-after-time": (f'{T}A="b"', 24, "whitespace", False),
    "four-digit-millis": ('2017-07-09 13:45:29,9191 A="b"', 24, "whitespace", False),
    "quote-instead-of-key": (f'{T} "b"', 25, KEY_HELP, False),
    "unquoted-value": (f"{T} Level=INFO", 30, "'=\"' after key 'Level'", False),
    "space-around-equals": (f'{T} Level = "INFO"', 30, "'=\"' after key 'Level'", False),
    "single-quotes": (f"{T} Level='INFO'", 30, "'=\"' after key 'Level'", False),
    "bad-key-char": (f'{T} Le:vel="INFO"', 27, "'=\"' after key 'Le'", False),
    # Truncated: the error is where the line ends, and says what was still due.
    "only-timestamp": (T, 24, "whitespace", True),
    "timestamp-and-space": (f"{T} ", 24, KEY_HELP, True),
    "cut-in-timestamp": ("2017-07-09 13:4", 15, "minute 00-59", True),
    "cut-in-first-value": (f'{T} Level="INF', 35, "'\"' closing the value of key 'Level'", True),
    "cut-in-later-value": (
        f'{T} Level="INFO" Call-id="5f3d1c2a-8b7e',
        60,
        "'\"' closing the value of key 'Call-id'",
        True,
    ),
    "cut-after-opening-quote": (
        f'{T} Level="INFO" Call-id="',
        47,
        "'\"' closing the value of key 'Call-id'",
        True,
    ),
    "cut-in-key": (f'{T} Level="INFO" Call-i', 44, "'=\"' after key 'Call-i'", True),
    "cut-after-equals": (f'{T} Level="INFO" Call-id=', 45, "'=\"' after key 'Call-id'", True),
    "cut-after-escaped-quote": (
        f'{T} Level="INFO" A="x\\"',
        44,
        "'\"' closing the value of key 'A'",
        True,
    ),
    "cut-with-trailing-cr": (
        f'{T} Level="INF\r\n',
        35,
        "'\"' closing the value of key 'Level'",
        True,
    ),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_error(case: str) -> None:
    body, column, expected, truncated = ERRORS[case]
    error = parse_error(body)
    assert (error.column, error.expected, error.truncated) == (column, expected, truncated)
    assert str(error) == f"column {column}: expected {expected}"
    assert isinstance(error, ValueError)


def test_error_is_picklable() -> None:
    error = parse_error(f'{T} Level="INF')
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.column, copy.expected, copy.truncated, str(copy)) == (
        error.column,
        error.expected,
        True,
        str(error),
    )


# id -> (body, fields kept with partial=True)
PARTIAL: dict[str, tuple[str, dict[str, str]]] = {
    "cut-in-value": (f'{T} Level="INFO" Name="x" Call-id="5f3d', {"level": "INFO", "name": "x"}),
    "cut-after-opening-quote": (f'{T} Level="INFO" Call-id="', {"level": "INFO"}),
    "cut-in-key": (f'{T} Level="INFO" Call-i', {"level": "INFO"}),
    "cut-after-equals": (f'{T} Level="INFO" Call-id=', {"level": "INFO"}),
    "cut-after-equals-with-cr": (f'{T} Level="INFO" Call-id=\r', {"level": "INFO"}),
    "cut-in-json": (f'{T} A="b" Content="{{"a": "b", "c', {"a": "b"}),
    "cut-after-escape": (f'{T} A="b" C="say \\"hi\\', {"a": "b"}),
}


@pytest.mark.parametrize("case", sorted(PARTIAL))
def test_partial_keeps_complete_pairs(case: str) -> None:
    body, fields = PARTIAL[case]
    assert parse_error(body).truncated
    event = parse_pexip(body, partial=True)
    assert dict(event.fields) == fields
    assert event.truncated
    assert event.time == T0
    assert pexip._parse_grammar(body, True) == event


@pytest.mark.parametrize(
    "body",
    [f'{T} Level="INF', f"{T} Lev", f"{T} ", T, "2017-07-09 13", f'{T} Level=INFO A="b"'],
    ids=["cut-in-first-value", "cut-in-first-key", "no-pair", "no-space", "cut-in-time", "bad"],
)
def test_partial_still_raises_without_a_complete_pair_or_on_bad_input(body: str) -> None:
    with pytest.raises(PexipParseError):
        parse_pexip(body, partial=True)


def test_partial_on_a_complete_line_is_not_truncated() -> None:
    event = parse_pexip(f'{T} Level="INFO" A="b"', partial=True)
    assert not event.truncated
    assert event == parse_pexip(f'{T} Level="INFO" A="b"')


# --------------------------------------------------------------------------------------------
# find_pexip_body / is_pexip_body
# --------------------------------------------------------------------------------------------

# T written with Arabic-Indic digits: str.isdigit() and regex \d accept them, the format does not.
ARABIC_INDIC_T = "".join(chr(0x660 + int(c)) if c.isdigit() else c for c in T)
FIND: dict[str, tuple[str, int]] = {
    "bare-body": (f'{T} Level="INFO"', 0),
    "unified-log-prefix": (f'2017-07-09T13:45:29.920+00:00 conf2 {T} Level="INFO"', 36),
    "host-prefix": (f'us-mns-wrk1 {T} Level="INFO"', 12),
    "tag-prefix": (f'pexip: {T} Level="INFO"', 7),
    "no-space-before": (f'conf2:{T} Level="INFO"', 6),
    "tab-after-time": (f'conf2 {T}\tLevel="INFO"', 6),
    "first-of-two": (f'h {T} A="{T} B="x""', 2),
    "digit-before-is-not-a-start": (f'h 1{T} Level="INFO"', -1),
    "no-key-after-time": (f"h {T} hello", -1),
    "key-without-quote": (f"h {T} Level=INFO", -1),
    "iso-time-only": ("2017-07-09T13:45:29.920+00:00 conf2 hello", -1),
    "plain-text": ("Accepted publickey for root from 10.0.0.1", -1),
    "empty": ("", -1),
    "unicode-digits": (ARABIC_INDIC_T + ' Level="INFO"', -1),
}


@pytest.mark.parametrize("case", sorted(FIND))
def test_find_pexip_body(case: str) -> None:
    message, start = FIND[case]
    assert find_pexip_body(message) == start
    assert is_pexip_body(message) is (start >= 0)


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

KEY_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
STORED_LIMITS = {"level": LEVEL_MAX, "name": NAME_MAX, "participant-id": PARTICIPANT_ID_MAX}
keys = st.text(KEY_ALPHABET, min_size=1, max_size=12)
times = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999000)
).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000, tzinfo=UTC))
gaps = st.sampled_from([" ", "  ", "\t", " \t ", "\u00a0"])
trailers = st.sampled_from(["", " ", "\r", "\r\n", "\n", " \r\n"])
# Pieces that make values hard: quotes, backslashes, the CR marker, whitespace, JSON, non-ASCII.
tricky = st.sampled_from(
    [
        *('"', "\\", '\\"', "^M", "^", "M", " ", "\t", "\r\n", '" ', '" A="', "=", '="'),
        *("{", "}", '": "', '", "', "ë", "Å", "会", "🎥", "\u00a0", "\x00"),
    ]
)


def stamp(time: datetime) -> str:
    # Not strftime: %Y does not zero-pad years below 1000 on every platform.
    return (
        f"{time.year:04d}-{time.month:02d}-{time.day:02d} "
        f"{time.hour:02d}:{time.minute:02d}:{time.second:02d},{time.microsecond // 1000:03d}"
    )


def escape(value: str) -> str:
    return value.replace('"', '\\"')


escapable_values = (
    st.lists(st.one_of(tricky, st.characters()), max_size=12)
    .map("".join)
    .filter(lambda value: not value.endswith("\\"))
)
pairs = st.lists(
    st.tuples(gaps, keys, escapable_values),
    min_size=1,
    max_size=8,
    unique_by=lambda pair: pair[1].lower(),
)


@settings(max_examples=150, deadline=None)
@given(times, pairs, trailers)
@example(T0, [(" ", "Detail", '^M"Alice" <sip:a@b>^M'), (" ", "A", '\\" B="')], "")
def test_round_trip_escaped(
    time: datetime, fields: list[tuple[str, str, str]], trailer: str
) -> None:
    """Every value that does not end with a backslash survives, once its quotes are escaped."""
    body = stamp(time) + "".join(f'{gap}{key}="{escape(value)}"' for gap, key, value in fields)
    event = parse_pexip(body + trailer)
    assert event.time == time
    # A NUL is stored as U+FFFD (parsers/limits.py).
    stored = [(key.lower(), value.replace("\x00", "\ufffd")) for _, key, value in fields]
    assert list(event.fields.items()) == stored
    assert (event.level, event.name, event.message) == (
        event.get("level"),
        event.get("name"),
        event.get("message"),
    )
    assert not event.truncated


# Pexip-style values with bare quotes (JSON): text without a backslash and without a quote
# followed by whitespace round-trips unescaped.
raw_values = st.lists(
    st.one_of(
        st.sampled_from(['"', '""', '":"', '": ', '", ', "{", "}", "^M", "=", '="', "ë", "会"]),
        st.characters(blacklist_characters='"\\'),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=120, deadline=None)
@given(
    times,
    st.lists(st.tuples(keys, raw_values), min_size=1, max_size=8, unique_by=lambda p: p[0].lower()),
)
@example(T0, [("A", '""'), ("B", '{"a": "b", "c": [""]}')])
@example(T0, [("A", '= ""0=')])
@example(T0, [("LEVEL", "x" * (LEVEL_MAX + 1)), ("a", "b")])
def test_round_trip_unescaped(time: datetime, fields: list[tuple[str, str]]) -> None:
    # A bare quote followed by whitespace may end a value: keep those out.
    fields = [(key, re.sub(r'"(?=\s)', '"x', value)) for key, value in fields]
    body = stamp(time) + "".join(f' {key}="{value}"' for key, value in fields)
    event = parse_pexip(body)
    assert event.time == time
    stored = [(key.lower(), value.replace("\x00", "\ufffd")) for key, value in fields]
    # A value too long for its column is dropped, and the event says so (parsers/limits.py).
    kept = [(key, value) for key, value in stored if len(value) <= STORED_LIMITS.get(key, 1e9)]
    assert list(event.fields.items()) == kept
    assert event.truncated == (kept != stored)


# Near-valid lines: mostly well-formed pieces, with every kind of damage mixed in.
# What may stand in for a digit of a timestamp: digits, separators, and non-ASCII digits
# (Arabic-Indic three, fullwidth one) that str.isdigit() accepts.
ODD_TIME_CHARS = "0123456789+-Z:., Tz\x00\u0663\uff11"
near_stamps = st.one_of(
    times.map(stamp),
    times.map(stamp),
    times.map(stamp),
    st.tuples(times.map(stamp), st.integers(0, 22), st.sampled_from(ODD_TIME_CHARS)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]
    ),
)
near_gaps = st.sampled_from([" "] * 8 + ["", "  ", "\t", "\u00a0", "\x1c", "\n"])
near_keys = st.one_of(keys, keys, keys, st.text(KEY_ALPHABET + ' "=\\ë', max_size=5))
near_values = st.lists(st.one_of(st.sampled_from("ab x"), tricky), max_size=8).map("".join)
near_pairs = st.lists(
    st.tuples(
        near_gaps,
        near_keys,
        st.sampled_from(['="'] * 8 + ["=", '"', '= "']),
        near_values,
        st.sampled_from(['"'] * 8 + ["", '\\"']),
    ),
    min_size=1,
    max_size=6,
)


@st.composite
def near_valid_bodies(draw: st.DrawFn) -> str:
    body = draw(near_stamps) + "".join("".join(pair) for pair in draw(near_pairs))
    body += draw(st.sampled_from(["", "", "", " ", "\r\n", "x"]))
    if draw(st.integers(0, 2)) == 0:
        # Cut short, mostly near the end, as syslog senders do.
        body = body[: len(body) - draw(st.integers(0, len(body)))]
    return body


@settings(max_examples=300, deadline=None)
@given(near_valid_bodies(), st.booleans())
# Found by this test: heads joined without a boundary looked like a valid shape.
@example('2000-01-01 00:00:00,000 0= ""0=""', False)
def test_fast_scanner_and_grammar_agree(body: str, partial: bool) -> None:
    """The scanners accept exactly what the grammar accepts, and return the same event; where
    they reject, parse_pexip() raises the grammar's own error."""
    grammar = grammar_or_none(body, partial)
    assert scanned_or_none(body, partial) == grammar
    if grammar is None:
        with pytest.raises(PexipParseError) as caught:
            parse_pexip(body, partial=partial)
        with pytest.raises(PexipParseError) as reference:
            pexip._parse_grammar(body, partial)
        assert str(caught.value) == str(reference.value)
        assert caught.value.truncated == reference.value.truncated
    # Each scanner alone, too (the simple one takes most lines before the general one runs),
    # and the simple one twice: the second time with the builder written for the line's shape.
    for _ in range(2):
        simple = pexip._scan_simple(body)
        assert simple is None or simple == grammar
    scanned = pexip._scan_general(body)
    if scanned is not None:
        event, cut = scanned
        assert event == grammar_or_none(body, True)
        assert (cut is None) == (not event.truncated)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(), near_valid_bodies()), st.booleans())
def test_only_parse_errors_are_raised(text: str, partial: bool) -> None:
    try:
        event = parse_pexip(text, partial=partial)
    except PexipParseError as error:
        assert 1 <= error.column <= len(text) + 1
    else:
        assert isinstance(event, PexipEvent)
        assert event.truncated <= partial


@pytest.mark.parametrize("position", [i for i in range(23) if i not in (4, 7, 10, 13, 16, 19)])
def test_fast_time_check_matches_grammar_digit_by_digit(position: int) -> None:
    """The fast path leaves digit checks to datetime.fromisoformat(); prove it is as strict."""
    for char in ODD_TIME_CHARS:
        body = f'{T[:position]}{char}{T[position + 1 :]} Level="INFO"'
        assert scanned_or_none(body, False) == grammar_or_none(body, False), body


def test_shape_caches_are_bounded() -> None:
    for i in range(pexip._SHAPES_MAX + 10):
        for _ in range(2):  # a shape gets a builder the second time it is seen
            assert parse_pexip(f'{T} K{i}="v" Level="INFO"').fields == {
                f"k{i}": "v",
                "level": "INFO",
            }
    assert len(pexip._builders) <= pexip._SHAPES_MAX
    assert len(pexip._seen) <= pexip._SHAPES_MAX
    assert parse_pexip(f'{T} Level="INFO"').level == "INFO"
