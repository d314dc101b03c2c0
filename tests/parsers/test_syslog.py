"""parse_syslog against the syslog-anchors.md Part 2 edge cases, real lines and properties."""

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.syslog import (
    SyslogFormat,
    SyslogMessage,
    _rfc5424,
    decode_message,
    parse_structured_data,
    parse_syslog,
)

RECEIVED = datetime(2025, 3, 8, 12, 0, tzinfo=UTC)
BOM = b"\xef\xbb\xbf"
RFC5424 = SyslogFormat.RFC5424
RFC3164 = SyslogFormat.RFC3164
ISO = SyslogFormat.ISO


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def ok(frame: bytes, msg: bytes, *, id: str, **fields: Any) -> Any:
    """A table row: ``frame`` parses to exactly ``fields``, its MSG being the trailing ``msg``."""
    assert frame.endswith(msg)
    expected = SyslogMessage(msg_offset=len(frame) - len(msg), **fields)
    return pytest.param(frame, expected, id=id)


def raw(frame: bytes, prefix: str, column: int, *words: str, id: str) -> Any:
    """A table row: ``frame`` is RAW, the error names the format, the column and ``words``."""
    return pytest.param(frame, prefix, column, words, id=id)


def check_ok(frame: bytes, expected: SyslogMessage) -> None:
    assert parse_syslog(frame, received_at=RECEIVED) == expected


def check_raw(frame: bytes, prefix: str, column: int, words: tuple[str, ...]) -> None:
    message = parse_syslog(frame, received_at=RECEIVED)
    assert message.format is SyslogFormat.RAW
    assert message == SyslogMessage(SyslogFormat.RAW, error=message.error)
    assert message.error is not None
    assert message.error.startswith(f"{prefix}: "), message.error
    assert f" at column {column}:" in message.error, message.error
    for word in words:
        assert word in message.error, message.error
    assert decode_message(frame, message) == frame.rstrip(b"\r\n\x00").decode("utf-8", "replace")


def pri14(**fields: Any) -> dict[str, Any]:
    return {"format": RFC5424, "facility": 1, "severity": 6, **fields}


# --- RFC 5424 header ---------------------------------------------------------------------------

HEADER_OK = [
    ok(b"<14>1 - - - - - -", b"", id="nil-everywhere-no-msg", **pri14()),
    ok(b"<14>1 - - - - - - hello", b"hello", id="nil-everywhere-with-msg", **pri14()),
    ok(b"<0>1 - - - - - - x", b"x", id="pri-0", format=RFC5424, facility=0, severity=0),
    ok(b"<191>1 - - - - - - x", b"x", id="pri-191", format=RFC5424, facility=23, severity=7),
    ok(
        b"<14>1 - my-host app-1 proc-2 ID-47 - x",
        b"x",
        id="dashes-inside-fields",
        **pri14(hostname="my-host", app_name="app-1", procid="proc-2", msgid="ID-47"),
    ),
    ok(
        b"<190>1 2025-01-01T00:00:00Z h 2025-01-01 - - - x",
        b"x",
        id="date-like-app-name",
        format=RFC5424,
        facility=23,
        severity=6,
        timestamp=utc(2025, 1, 1),
        timestamp_text="2025-01-01T00:00:00Z",
        hostname="h",
        app_name="2025-01-01",
    ),
    ok(
        b"<14>1 - " + b"h" * 255 + b" " + b"a" * 48 + b" " + b"p" * 128 + b" " + b"m" * 32 + b" -",
        b"",
        id="fields-at-max-length",
        **pri14(hostname="h" * 255, app_name="a" * 48, procid="p" * 128, msgid="m" * 32),
    ),
    ok(
        b"<14>1 - !#$%&'()*+,./:;<=>?@[\\]^_`{|}~ a - - - x",
        b"x",
        id="all-punctuation-in-hostname",
        **pri14(hostname="!#$%&'()*+,./:;<=>?@[\\]^_`{|}~", app_name="a"),
    ),
    # A space inside a field shifts the rest; it is only caught when SD lands on a non-SD token.
    ok(
        b"<14>1 - host name app - - - msg",
        b"- msg",
        id="space-in-hostname-shifts-fields",
        **pri14(hostname="host", app_name="name", procid="app"),
    ),
]

HEADER_RAW = [
    raw(b"<14>1", "rfc5424", 5, "SP after VERSION", id="ends-after-version"),
    raw(b"<14>1 ", "rfc5424", 6, "missing TIMESTAMP", id="ends-after-version-space"),
    raw(b"<14>1 2025-03-0", "rfc5424", 15, "TIMESTAMP", id="ends-inside-timestamp"),
    raw(b"<14>1 - h a - -", "rfc5424", 15, "SP after MSGID", id="ends-after-msgid"),
    raw(b"<14>1 - h a - - ", "rfc5424", 16, "missing STRUCTURED-DATA", id="ends-before-sd"),
    raw(b"<192>1 - - - - - -", "rfc5424", 1, "PRI", "out of range", id="pri-192"),
    raw(b"<409>1 - - - - - -", "rfc5424", 1, "PRI", "out of range", id="pri-409-not-unknown"),
    raw(b"<014>1 - - - - - -", "rfc5424", 1, "PRI", "leading zero", id="pri-leading-zero"),
    raw(b"<>1 - - - - - -", "rfc5424", 1, "PRI", id="pri-empty"),
    raw(b"<x>1 - - - - - -", "rfc5424", 1, "PRI", id="pri-letter"),
    raw(b"<1000>1 - - - - - -", "rfc5424", 1, "PRI", "more than 3", id="pri-four-digits"),
    raw(b"14>1 - - - - - -", "rfc5424", 0, "'<'", id="pri-without-lt"),
    raw(b"<14>0 - - - - - -", "rfc5424", 4, "VERSION", id="version-zero"),
    raw(b"<14>01 - - - - - -", "rfc5424", 4, "VERSION", id="version-leading-zero"),
    raw(b"<14>1000 - - - - - -", "rfc5424", 4, "VERSION", id="version-four-digits"),
    raw(b"<14>2 - - - - - -", "rfc5424", 4, "unsupported VERSION", id="version-2-unsupported"),
    raw(b"<14>1- - - - - -", "rfc5424", 5, "SP after VERSION", id="version-missing-space"),
    raw(b"<14>1  - - - - -", "rfc5424", 6, "empty TIMESTAMP", id="two-spaces-in-header"),
    raw(b"<14>1 - h " + b"a" * 49 + b" - - -", "rfc5424", 58, "APP-NAME", id="app-name-49"),
    raw(b"<14>1 - " + b"h" * 256 + b" a - - -", "rfc5424", 263, "HOSTNAME", id="hostname-256"),
    raw(b"<14>1 - h a " + b"p" * 129 + b" - -", "rfc5424", 140, "PROCID", id="procid-129"),
    raw(b"<14>1 - h a - " + b"m" * 33 + b" -", "rfc5424", 46, "MSGID", id="msgid-33"),
    raw(b"<14>1 - my host app 1 ID47 - x", "rfc5424", 22, "STRUCTURED-DATA", id="space-in-host"),
    raw(b"<14>1 - h\xc3\xb4st a - - - x", "rfc5424", 9, "HOSTNAME", "0xc3", id="non-ascii-host"),
    raw(b"<14>1 - h\x01 a - - - x", "rfc5424", 9, "HOSTNAME", "0x01", id="control-byte-in-host"),
    raw(b"<14>1 - h a\x7f - - - x", "rfc5424", 11, "APP-NAME", "0x7f", id="del-in-app-name"),
    raw(b"<14>1 - h a - - -x", "rfc5424", 17, "SP after STRUCTURED-DATA", id="no-sp-before-msg"),
]


@pytest.mark.parametrize(("frame", "expected"), HEADER_OK)
def test_rfc5424_header_parses(frame: bytes, expected: SyslogMessage) -> None:
    check_ok(frame, expected)


@pytest.mark.parametrize(("frame", "prefix", "column", "words"), HEADER_RAW)
def test_rfc5424_header_is_rejected_with_column(
    frame: bytes, prefix: str, column: int, words: tuple[str, ...]
) -> None:
    check_raw(frame, prefix, column, words)


def test_a_letter_after_pri_is_rfc3164_not_a_bad_version() -> None:
    frame = b"<14>A - - - - - -"
    message = parse_syslog(frame, received_at=RECEIVED)
    assert message == SyslogMessage(RFC3164, facility=1, severity=6, msg_offset=4)
    assert decode_message(frame, message) == "A - - - - - -"


# --- RFC 5424 timestamp ------------------------------------------------------------------------


def ts_frame(timestamp: bytes) -> bytes:
    return b"<14>1 " + timestamp + b" h a - - - x"


TIMESTAMP_OK = [
    pytest.param(b"2025-03-09T10:00:00Z", utc(2025, 3, 9, 10), id="zulu"),
    pytest.param(b"2025-03-09T10:00:00.5Z", utc(2025, 3, 9, 10, 0, 0, 500000), id="fraction-1"),
    pytest.param(b"2025-03-09T10:00:00.123456Z", utc(2025, 3, 9, 10, 0, 0, 123456), id="frac-6"),
    pytest.param(b"2025-03-09T10:00:00+05:30", utc(2025, 3, 9, 4, 30), id="offset-plus-0530"),
    pytest.param(b"2025-03-09T10:00:00-00:00", utc(2025, 3, 9, 10), id="offset-minus-zero"),
    pytest.param(b"2025-03-09T10:00:00-08:00", utc(2025, 3, 9, 18), id="offset-minus-0800"),
    pytest.param(b"2025-03-10T00:30:00+23:59", utc(2025, 3, 9, 0, 31), id="offset-plus-2359"),
    pytest.param(b"2024-02-29T12:00:00Z", utc(2024, 2, 29, 12), id="feb-29-leap-year"),
    pytest.param(b"2016-12-31T23:59:60Z", utc(2016, 12, 31, 23, 59, 59), id="leap-second"),
    pytest.param(
        b"2016-12-31T23:59:60.999+01:00", utc(2016, 12, 31, 22, 59, 59, 999000), id="leap-second-tz"
    ),
    # Spring-forward gap of a CET host: the explicit offset makes it unambiguous.
    pytest.param(b"2025-03-30T02:30:00+01:00", utc(2025, 3, 30, 1, 30), id="cet-dst-gap"),
    pytest.param(b"2025-10-26T02:30:00+02:00", utc(2025, 10, 26, 0, 30), id="cest-dst-fold"),
    pytest.param(b"0001-01-01T00:00:00Z", utc(1, 1, 1), id="year-0001"),
    pytest.param(b"9999-12-31T23:59:59.999999Z", utc(9999, 12, 31, 23, 59, 59, 999999), id="9999"),
]

TIMESTAMP_BAD = [
    pytest.param(b"2025-03-09t10:00:00z", 10, "'T'", id="lower-case-t"),
    pytest.param(b"2025-03-09T10:00:00z", 19, "'Z'", id="lower-case-z"),
    pytest.param(b"2025-03-09T10:00:00.1234567Z", 26, "fraction", id="fraction-7-digits"),
    pytest.param(b"2025-03-09T10:00:00.Z", 20, "digit", id="fraction-no-digits"),
    pytest.param(b"2025-03-09T10:00:00,5Z", 19, "','", id="fraction-comma"),
    pytest.param(b"2025-03-09T10:00:00+0530", 22, "':'", id="offset-no-colon"),
    pytest.param(b"2025-03-09T10:00:00+5:30", 21, "digit", id="offset-one-digit-hour"),
    pytest.param(b"2025-03-09T10:00:00+24:00", 20, "offset hour", id="offset-24"),
    pytest.param(b"2025-03-09T10:00:00+05:60", 23, "offset minute", id="offset-minute-60"),
    pytest.param(b"2025-03-09T10:00:00+05:30:00", 25, "after the time offset", id="offset-secs"),
    pytest.param(b"2025-03-09T10:00:00", 19, "offset", id="offset-missing"),
    pytest.param(b"2025-13-09T10:00:00Z", 5, "month", id="month-13"),
    pytest.param(b"2025-00-09T10:00:00Z", 5, "month", id="month-00"),
    pytest.param(b"2023-02-29T10:00:00Z", 8, "day", id="feb-29-non-leap"),
    pytest.param(b"2024-02-30T10:00:00Z", 8, "day", id="feb-30"),
    pytest.param(b"2025-03-00T10:00:00Z", 8, "day", id="day-00"),
    pytest.param(b"2025-03-09T24:00:00Z", 11, "hour", id="hour-24"),
    pytest.param(b"2025-03-09T10:60:00Z", 14, "minute", id="minute-60"),
    pytest.param(b"2025-03-09T10:00:61Z", 17, "second", id="second-61"),
    pytest.param(b"0000-01-01T00:00:00Z", 0, "year", id="year-0000"),
    pytest.param(b"0001-01-01T00:00:00+01:00", 0, "UTC", id="before-year-1-in-utc"),
    pytest.param(b"2025-03-09 10:00:00Z", None, "", id="space-instead-of-t"),
    pytest.param(b"25-03-09T10:00:00Z", 2, "digit", id="two-digit-year"),
    pytest.param(b"2025-3-9T10:00:00Z", 6, "digit", id="unpadded-month"),
    pytest.param(b"\xd9\xa2025-03-09T10:00:00Z", 0, "0xd9", id="non-ascii-digit"),
]


@pytest.mark.parametrize(("timestamp", "expected"), TIMESTAMP_OK)
def test_rfc5424_timestamp_parses_to_utc(timestamp: bytes, expected: datetime) -> None:
    message = parse_syslog(ts_frame(timestamp))
    assert message.format is RFC5424, message.error
    assert message.timestamp == expected
    assert message.timestamp is not None and message.timestamp.tzinfo is UTC
    assert message.timestamp_text == timestamp.decode()


@pytest.mark.parametrize(("timestamp", "column", "word"), TIMESTAMP_BAD)
def test_rfc5424_bad_timestamp_is_raw_with_column(
    timestamp: bytes, column: int | None, word: str
) -> None:
    frame = ts_frame(timestamp)
    if column is None:  # the SP splits the timestamp: the error lands on the TIMESTAMP token
        check_raw(frame, "rfc5424", 16, ("TIMESTAMP",))
    else:
        check_raw(frame, "rfc5424", 6 + column, ("TIMESTAMP", word))


# --- Structured data ---------------------------------------------------------------------------

SD_OK = [
    pytest.param(
        '[a@1 x="1"][b@2 y="2"]', {"a@1": {"x": "1"}, "b@2": {"y": "2"}}, id="two-elements"
    ),
    pytest.param("[ping@32473]", {"ping@32473": {}}, id="element-without-params"),
    pytest.param('[a@1 x=""]', {"a@1": {"x": ""}}, id="empty-value"),
    pytest.param('[e@1 p="a\\"b\\\\c\\]d"]', {"e@1": {"p": 'a"b\\c]d'}}, id="escapes"),
    pytest.param('[e@1 p="C:\\temp"]', {"e@1": {"p": "C:\\temp"}}, id="literal-backslash"),
    pytest.param('[e@1 p="\\\\"]', {"e@1": {"p": "\\"}}, id="escaped-backslash-at-end"),
    pytest.param('[e@1 p="línea"]', {"e@1": {"p": "línea"}}, id="utf8-value"),
    pytest.param('[e@1 p="a\x01\tb\nc"]', {"e@1": {"p": "a\x01\tb\nc"}}, id="control-chars-value"),
    pytest.param(
        "[e@1 p=\"[x\\] = 'y'\"]", {"e@1": {"p": "[x] = 'y'"}}, id="brackets-equals-value"
    ),
    pytest.param('[e@1 p="1" p="2"]', {"e@1": {"p": "2"}}, id="repeated-param-last-wins"),
    pytest.param(
        '[timeQuality tzKnown="1" isSynced="1"][origin ip="10.0.0.1"][meta sequenceId="7"]'
        '[exampleSDID@32473 iut="3" eventSource="Application"]',
        {
            "timeQuality": {"tzKnown": "1", "isSynced": "1"},
            "origin": {"ip": "10.0.0.1"},
            "meta": {"sequenceId": "7"},
            "exampleSDID@32473": {"iut": "3", "eventSource": "Application"},
        },
        id="registered-and-private-ids",
    ),
    pytest.param(
        "[" + "i" * 32 + " " + "n" * 32 + '="v"]', {"i" * 32: {"n" * 32: "v"}}, id="names-at-32"
    ),
    pytest.param(
        "".join(f'[id{i}@1 v="{"x" * 400}"]' for i in range(20)),
        {f"id{i}@1": {"v": "x" * 400} for i in range(20)},
        id="long-sd-block",
    ),
]

# (SD text, column in the SD text, words in the error)
SD_BAD = [
    pytest.param('[a@1 p="a]b"]', 9, "unescaped ']'", id="unescaped-bracket"),
    pytest.param('[a@1 p="a"b"]', 9, "unescaped '\"'", id="unescaped-quote"),
    pytest.param("[a@1 p=abc]", 7, "quoted", id="unquoted-value"),
    pytest.param("[]", 1, "SD-ID", id="empty-element"),
    pytest.param('[a@1 x="1"', 10, "']'", id="missing-close-bracket"),
    pytest.param('[a@1 x="1', 9, "closing", id="missing-close-quote"),
    pytest.param('[a@1 x="1\\"]', 11, "unescaped ']'", id="escaped-quote-then-bracket"),
    pytest.param('[a@1 x="1\\"', 11, "closing", id="escaped-closing-quote"),
    pytest.param('[a=b x="1"]', 2, "SD-ID", id="equals-in-sd-id"),
    pytest.param('[a"b x="1"]', 2, "SD-ID", id="quote-in-sd-id"),
    pytest.param("[a b]", 4, "'='", id="space-in-sd-id"),
    pytest.param("[" + "i" * 33 + "]", 33, "SD-ID longer than 32", id="sd-id-33"),
    pytest.param("[a " + "n" * 33 + '="v"]', 35, "PARAM-NAME longer", id="param-name-33"),
    pytest.param('[a@1 x="1"][a@1 y="2"]', 12, "duplicate SD-ID", id="duplicate-sd-id"),
    pytest.param('[a@1  x="1"]', 5, "PARAM-NAME", id="two-spaces-before-param"),
    pytest.param('[a@1 x ="1"]', 6, "'='", id="space-before-equals"),
    pytest.param("[a\xe9 x]", 2, "SD-ID", id="non-ascii-sd-id"),
]


@pytest.mark.parametrize(("sd", "expected"), SD_OK)
def test_structured_data_is_kept_raw_and_splits_lazily(
    sd: str, expected: dict[str, dict[str, str]]
) -> None:
    frame = b"<14>1 - h a - - " + sd.encode() + b" msg"
    message = parse_syslog(frame)
    assert message.format is RFC5424, message.error
    assert message.structured_data == sd
    assert decode_message(frame, message) == "msg"
    assert parse_structured_data(sd) == expected


@pytest.mark.parametrize(("sd", "column", "word"), SD_BAD)
def test_bad_structured_data_is_rejected_with_column(sd: str, column: int, word: str) -> None:
    with pytest.raises(ValueError, match=f"at column {column}:") as error:
        parse_structured_data(sd)
    assert word in str(error.value)
    head = b"<14>1 - h a - - "
    # Latin-1 keeps one byte per character, so the frame column is the SD column + len(head).
    check_raw(head + sd.encode("latin-1"), "rfc5424", len(head) + column, (word,))


def test_sd_must_be_utf8() -> None:
    check_raw(b'<14>1 - h a - - [a p="\xff"] m', "rfc5424", 22, ("STRUCTURED-DATA", "UTF-8"))


def test_sd_followed_by_junk_is_rejected() -> None:
    with pytest.raises(ValueError, match="at column 5:"):
        parse_structured_data("[a@1] tail")
    check_raw(b"<14>1 - h a - - [a]b m", "rfc5424", 19, ("SP after STRUCTURED-DATA",))


@pytest.mark.parametrize("sd", ["-", ""], ids=["nil", "empty"])
def test_nil_structured_data_splits_to_nothing(sd: str) -> None:
    assert parse_structured_data(sd) == {}


# --- MSG and encoding --------------------------------------------------------------------------

MSG_CASES = [
    pytest.param(b"<14>1 - h a - - - " + BOM + "héllo".encode(), 21, "héllo", id="bom-utf8"),
    pytest.param(b"<14>1 - h a - - - caf\xe9", 18, "caf\ufffd", id="latin1-without-bom"),
    pytest.param(b"<14>1 - h a - - - " + BOM + b"\xc0\xaf", 21, "\ufffd\ufffd", id="overlong"),
    pytest.param(
        b"<14>1 - h a - - - " + BOM + b"\xed\xa0\x80", 21, "\ufffd" * 3, id="lone-surrogate"
    ),
    pytest.param(b"<14>1 - h a - - - " + BOM + b"\xfe\xff", 21, "\ufffd\ufffd", id="fe-ff"),
    pytest.param(b"<14>1 - h a - - - " + BOM + b"ok\xe2\x82", 21, "ok\ufffd", id="truncated-utf8"),
    pytest.param(b"<14>1 - h a - - [x@1] " + BOM + b"sd", 25, "sd", id="bom-after-sd"),
    pytest.param(b"<14>1 - h a - - - " + BOM, 21, "", id="bom-only"),
    pytest.param(b"<14>1 - h a - - - line1\nline2", 18, "line1\nline2", id="lf-inside"),
    pytest.param(b"<14>1 - h a - - - a\rb\x00c", 18, "a\rb\x00c", id="cr-nul-inside"),
    pytest.param(b"<14>1 - h a - - - crlf\r\n", 18, "crlf", id="trailing-crlf"),
    pytest.param(b"<14>1 - h a - - - nul\x00", 18, "nul", id="trailing-nul"),
    pytest.param(b"<14>1 - h a - - -\n", 17, "", id="counted-lf-without-msg"),
    pytest.param(b'<14>1 - h a - - [x@1 a="b"]\r\n', 27, "", id="crlf-after-sd"),
    pytest.param(b"<14>1 - h a - - -  msg", 18, " msg", id="two-spaces-before-msg"),
    pytest.param(b"<14>1 - h a - - -   ", 18, "  ", id="only-spaces-msg"),
    pytest.param(
        b'<14>1 - h a - - - user said "]<13>"', 18, 'user said "]<13>"', id="quotes-brackets"
    ),
    pytest.param(
        b"<14>1 - h a - - - <13>1 - h a - - - inner", 18, "<13>1 - h a - - - inner", id="nested"
    ),
]


@pytest.mark.parametrize(("frame", "offset", "text"), MSG_CASES)
def test_msg_offset_and_decoding(frame: bytes, offset: int, text: str) -> None:
    message = parse_syslog(frame)
    assert message.format is RFC5424, message.error
    assert message.msg_offset == offset
    assert decode_message(frame, message) == text


# --- RFC 3164 / BSD ----------------------------------------------------------------------------


def bsd(**fields: Any) -> dict[str, Any]:
    return {"format": RFC3164, **fields}


RFC3164_OK = [
    ok(
        b"<13>Mar  7 19:06:53 host app: m",
        b"m",
        id="day-space-padded",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 19:06:53",
        hostname="host",
        app_name="app",
    ),
    ok(
        b"<13>Mar 07 19:06:53 host app: m",
        b"m",
        id="day-zero-padded",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar 07 19:06:53",
        hostname="host",
        app_name="app",
    ),
    ok(
        b"<13>Mar 7 19:06:53 host app: m",
        b"m",
        id="day-unpadded",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar 7 19:06:53",
        hostname="host",
        app_name="app",
    ),
    ok(
        b"<189>Mar  7 19:06:53.123 UTC: host app: m",
        b"m",
        id="millis-and-utc-colon",
        **bsd(facility=23, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53, 123000)),
        timestamp_text="Mar  7 19:06:53.123 UTC",
        hostname="host",
        app_name="app",
    ),
    ok(
        b"<13>Mar  7 19:06:53.123456 GMT host app: m",
        b"m",
        id="micros-and-gmt",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53, 123456)),
        timestamp_text="Mar  7 19:06:53.123456 GMT",
        hostname="host",
        app_name="app",
    ),
    ok(
        b"<13>Mar  7 2024 19:06:53 host app: m",
        b"m",
        id="year-after-date",
        **bsd(facility=1, severity=5, timestamp=utc(2024, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 2024 19:06:53",
        hostname="host",
        app_name="app",
    ),
    ok(
        b"<13>2025-03-07T19:06:53Z host app: m",
        b"m",
        id="iso-timestamp-in-bsd-header",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="2025-03-07T19:06:53Z",
        hostname="host",
        app_name="app",
    ),
    ok(
        b"<13>2025-03-07T20:06:53.123456789+01:00 host app: m",
        b"m",
        id="iso-nanoseconds-in-bsd-header",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53, 123456)),
        timestamp_text="2025-03-07T20:06:53.123456789+01:00",
        hostname="host",
        app_name="app",
    ),
    ok(
        b"<13>Mar  7 19:06:53 sshd[42]: Accepted publickey",
        b"Accepted publickey",
        id="missing-hostname-tag-with-pid",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 19:06:53",
        app_name="sshd",
        procid="42",
    ),
    ok(
        b"<13>Mar  7 19:06:53 cron: job",
        b"job",
        id="missing-hostname-tag",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 19:06:53",
        app_name="cron",
    ),
    *(
        ok(
            b"<13>Mar  7 19:06:53 " + host.encode() + b" app[1]: m",
            b"m",
            id=f"hostname-{name}",
            **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
            timestamp_text="Mar  7 19:06:53",
            hostname=host,
            app_name="app",
            procid="1",
        )
        for name, host in [
            ("ipv4", "192.0.2.1"),
            ("ipv6", "2001:db8::1"),
            ("ipv6-bracketed", "[fe80::1]"),
            ("slash", "a/b"),
            ("at-sign", "user@host"),
        ]
    ),
    ok(
        b"<27>xapi: [error] boom",
        b"[error] boom",
        id="missing-timestamp",
        **bsd(facility=3, severity=3),
        app_name="xapi",
    ),
    ok(
        b"<13>just some text",
        b"just some text",
        id="missing-timestamp-and-tag",
        **bsd(facility=1, severity=5),
    ),
    ok(b"<13>", b"", id="pri-only", **bsd(facility=1, severity=5)),
    ok(
        b"Oct 11 22:14:15 host su: 'su root' failed",
        b"'su root' failed",
        id="missing-pri",
        **bsd(timestamp=utc(2024, 10, 11, 22, 14, 15)),
        timestamp_text="Oct 11 22:14:15",
        hostname="host",
        app_name="su",
    ),
    ok(
        b"<13>Mar  7 19:06:53 host app msg",
        b"app msg",
        id="tag-without-colon-starts-msg",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 19:06:53",
        hostname="host",
    ),
    ok(
        b"<13>Mar  7 19:06:53 host app[9] msg",
        b"app[9] msg",
        id="pid-tag-without-colon-starts-msg",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 19:06:53",
        hostname="host",
    ),
    ok(
        b"<13>Mar  7 19:06:53 host app:msg",
        b"app:msg",
        id="colon-without-space-is-msg",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 19:06:53",
        hostname="host",
    ),
    ok(
        b"<13>Mar  7 19:06:53 host " + b"t" * 40 + b": m",
        b"m",
        id="tag-longer-than-32",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 19:06:53",
        hostname="host",
        app_name="t" * 40,
    ),
    ok(
        b"<22>Mar  7 19:06:53 mx postfix/smtpd[1234]: connect",
        b"connect",
        id="tag-with-slash",
        **bsd(facility=2, severity=6, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 19:06:53",
        hostname="mx",
        app_name="postfix/smtpd",
        procid="1234",
    ),
    ok(
        b"<13>Mar  7 19:06:53 host java.app: m",
        b"m",
        id="tag-with-dot",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 19:06:53",
        hostname="host",
        app_name="java.app",
    ),
    ok(
        b"<189>123: Mar  7 19:06:53: %SYS-5-CONFIG_I: Configured from console",
        b"Configured from console",
        id="cisco-sequence-counter",
        **bsd(facility=23, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 19:06:53",
        app_name="%SYS-5-CONFIG_I",
    ),
    ok(
        b"<189>45: *Mar  1 00:00:10.123: %LINK-3-UPDOWN: down",
        b"down",
        id="cisco-unsynced-clock-marker",
        **bsd(facility=23, severity=5, timestamp=utc(2025, 3, 1, 0, 0, 10, 123000)),
        timestamp_text="*Mar  1 00:00:10.123",
        app_name="%LINK-3-UPDOWN",
    ),
    ok(
        b"<189>123: %SYS-5-CONFIG_I: Configured",
        b"Configured",
        id="cisco-counter-without-timestamp",
        **bsd(facility=23, severity=5),
        app_name="%SYS-5-CONFIG_I",
    ),
    ok(
        b"<13>123: not cisco",
        b"not cisco",
        id="digits-colon-is-a-tag",
        **bsd(facility=1, severity=5),
        app_name="123",
    ),
    ok(
        b"<13>Mar  7 19:06:53 host app: a\x01b\tc\xff",
        b"a\x01b\tc\xff",
        id="control-and-8bit-content",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 19:06:53",
        hostname="host",
        app_name="app",
    ),
    ok(
        b"<13>Feb 30 10:00:00 host app: m",
        b"m",
        id="impossible-date-keeps-text",
        **bsd(facility=1, severity=5),
        timestamp_text="Feb 30 10:00:00",
        hostname="host",
        app_name="app",
    ),
    ok(
        b"<13>Mar  7 19:06:60 host app: m",
        b"m",
        id="bsd-leap-second",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 59)),
        timestamp_text="Mar  7 19:06:60",
        hostname="host",
        app_name="app",
    ),
    ok(
        b"<13>Mar  7 19:06:53 h\xc3\xb4st app: m",
        "hôst app: m".encode(),
        id="non-ascii-hostname-starts-msg",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 19:06:53",
    ),
    ok(
        b"<13>Mar  7 19:06:53 host",
        b"",
        id="ends-after-hostname",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 19:06:53",
        hostname="host",
    ),
    ok(
        b"<13>Mar  7 19:06:53",
        b"",
        id="ends-after-timestamp",
        **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
        timestamp_text="Mar  7 19:06:53",
    ),
]

RFC3164_RAW = [
    raw(b"<192>Mar  7 19:06:53 host app: m", "rfc3164", 1, "PRI", "192", id="pri-192"),
    raw(b"<1x>Mar  7 19:06:53 host app: m", "rfc3164", 2, "PRI", "'x'", id="pri-1x"),
    raw(b"<13", "rfc3164", 3, "PRI", id="pri-unterminated"),
    raw(b"Mar  7 19:06 host app: m", "rfc3164", 0, "TIMESTAMP", id="no-pri-short-time"),
]


@pytest.mark.parametrize(("frame", "expected"), RFC3164_OK)
def test_rfc3164_parses(frame: bytes, expected: SyslogMessage) -> None:
    check_ok(frame, expected)


@pytest.mark.parametrize(("frame", "prefix", "column", "words"), RFC3164_RAW)
def test_rfc3164_is_rejected_with_column(
    frame: bytes, prefix: str, column: int, words: tuple[str, ...]
) -> None:
    check_raw(frame, prefix, column, words)


YEAR_CASES = [
    pytest.param(b"Dec 31 23:59:59", utc(2026, 1, 1, 0, 0, 5), 2025, id="dec-31-seen-jan-1"),
    pytest.param(b"Jan  1 00:00:01", utc(2025, 12, 31, 23, 59), 2026, id="jan-1-seen-dec-31"),
    pytest.param(b"Jul  1 00:00:00", utc(2025, 1, 1), 2025, id="half-year-ahead"),
    pytest.param(b"Jul  3 00:00:00", utc(2025, 1, 1), 2024, id="past-half-year-ahead"),
    pytest.param(b"Feb 29 12:00:00", utc(2025, 1, 10), 2024, id="feb-29-nearest-leap-year"),
]


@pytest.mark.parametrize(("stamp", "received", "year"), YEAR_CASES)
def test_rfc3164_year_is_the_one_closest_to_receipt(
    stamp: bytes, received: datetime, year: int
) -> None:
    message = parse_syslog(b"<13>" + stamp + b" h a: m", received_at=received)
    assert message.timestamp is not None
    assert message.timestamp.year == year


def test_rfc3164_feb_29_without_nearby_leap_year_has_no_timestamp() -> None:
    message = parse_syslog(b"<13>Feb 29 12:00:00 h a: m", received_at=utc(2026, 6, 1))
    assert message.timestamp is None
    assert message.timestamp_text == "Feb 29 12:00:00"
    assert message.hostname == "h"


def test_rfc3164_naive_received_at_is_utc() -> None:
    naive = datetime(2026, 1, 1, 0, 0, 5)
    message = parse_syslog(b"<13>Dec 31 23:59:59 h a: m", received_at=naive)
    assert message.timestamp == utc(2025, 12, 31, 23, 59, 59)


def test_rfc3164_default_received_at_is_now() -> None:
    now = datetime.now(UTC)
    stamp = now.strftime("%b %d %H:%M:%S").encode()
    message = parse_syslog(b"<13>" + stamp + b" h a: m")
    assert message.timestamp is not None
    assert abs(message.timestamp - now) < timedelta(seconds=2)


ZONE_CASES = [
    pytest.param(UTC, utc(2025, 3, 7, 19, 6, 53), id="utc"),
    pytest.param(timezone(timedelta(hours=-5)), utc(2025, 3, 8, 0, 6, 53), id="fixed-minus-5"),
    pytest.param(ZoneInfo("Europe/Paris"), utc(2025, 3, 7, 18, 6, 53), id="paris-winter"),
]


@pytest.mark.parametrize(("zone", "expected"), ZONE_CASES)
def test_rfc3164_timestamp_without_zone_uses_default_tz(
    zone: timezone | ZoneInfo, expected: datetime
) -> None:
    message = parse_syslog(b"<13>Mar  7 19:06:53 h a: m", received_at=RECEIVED, default_tz=zone)
    assert message.timestamp == expected
    assert message.timestamp is not None and message.timestamp.tzinfo is UTC


def test_rfc3164_zone_word_beats_default_tz() -> None:
    paris = ZoneInfo("Europe/Paris")
    message = parse_syslog(b"<13>Mar  7 19:06:53 UTC: h a: m", default_tz=paris)
    assert message.timestamp is not None
    assert (message.timestamp.hour, message.timestamp.minute) == (19, 6)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        # 02:30 does not exist in Paris on 2025-03-30; zoneinfo reads it with the winter offset.
        pytest.param(b"Mar 30 02:30:00", utc(2025, 3, 30, 1, 30), id="spring-forward-gap"),
        # 02:30 happens twice on 2025-10-26; the first (summer, fold=0) one is taken.
        pytest.param(b"Oct 26 02:30:00", utc(2025, 10, 26, 0, 30), id="fall-back-fold"),
    ],
)
def test_rfc3164_dst_edges_in_sender_zone(stamp: bytes, expected: datetime) -> None:
    message = parse_syslog(
        b"<13>" + stamp + b" h a: m",
        received_at=utc(2025, 6, 1),
        default_tz=ZoneInfo("Europe/Paris"),
    )
    assert message.timestamp == expected


# --- Pexip, util-linux logger, PRI-less ISO ----------------------------------------------------

S2_LINE_1 = (
    '2017-07-09T13:45:29.919+00:00 conf2 2017-07-09 13:45:29,919 Level="INFO" '
    'Name="support.externalpolicy" Message="External policy request" Method="GET" '
    'URL="http://policy.pex.me/policy/v1/participant/avatar/nigel%40pexip.vc?…&role=chair'
    '&location=Washington" Timeout="5" Request-Id="6d6cc41c-bdc9-486e-a654-831355487a63"'
).encode()
S2_LINE_2 = (
    b'2017-07-09T13:45:29.920+00:00 conf2 2017-07-09 13:45:29,919 Level="INFO" Pid="2166" '
    b'Module="messagepublisher" Function="send_message" Message="Publishing message" '
    b'Queue="management_queue" Name="participant_connected"'
)
S2_LINE_3 = (
    b'2017-07-09T13:45:29.921+00:00 mgr 2017-07-09 13:45:29,921 Level="INFO" Pid="2056" '
    b'Module="messagesubscriber" Function="_read_message_loop" Message="Received message" '
    b'Content="{"protocol": "MSSIP", "parent_uuid": "", "is_presenting": false, '
    b'"conversation_id": "AdL4uaCeGpGVSjGqTiSuXB+y/3YdJA==", "ban'
)
S3_LINE = (
    b'2026-05-14T23:38:44.061+00:00 internal 2026-05-14 23:38:44,061 Level="INFO" '
    b'Name="administrator.conference" Message="Participant attempting to join conference." '
    b'ConferenceAlias="main-vmr" Participant="DENNIS J LORIST" Protocol="API" Direction="in" '
    b'Remote-Address="10.0.1.12" Participant-Id="e15d0b7a-..." Location="syd"'
)
PEXIP_5424 = (
    b"<134>1 2026-11-26T10:00:00.123456+00:00 conf-node-01 pexip - - - "
    b'2026-11-26 10:00:00,123 Level="INFO" Name="administrator.conference" '
    b'Message="Participant has joined."'
)


def body_of(line: bytes) -> bytes:
    """The Pexip body: from the originating time on (pexip-format.md section 1)."""
    return line[line.index(b" ", line.index(b" ") + 1) + 1 :]


REAL_LINES = [
    ok(
        S2_LINE_1,
        body_of(S2_LINE_1),
        id="pexip-s2-line-1",
        format=ISO,
        timestamp=utc(2017, 7, 9, 13, 45, 29, 919000),
        timestamp_text="2017-07-09T13:45:29.919+00:00",
        hostname="conf2",
    ),
    ok(
        S2_LINE_2,
        body_of(S2_LINE_2),
        id="pexip-s2-line-2",
        format=ISO,
        timestamp=utc(2017, 7, 9, 13, 45, 29, 920000),
        timestamp_text="2017-07-09T13:45:29.920+00:00",
        hostname="conf2",
    ),
    ok(
        S2_LINE_3,
        body_of(S2_LINE_3),
        id="pexip-s2-line-3-bare-json",
        format=ISO,
        timestamp=utc(2017, 7, 9, 13, 45, 29, 921000),
        timestamp_text="2017-07-09T13:45:29.921+00:00",
        hostname="mgr",
    ),
    ok(
        S3_LINE,
        body_of(S3_LINE),
        id="pexip-s3",
        format=ISO,
        timestamp=utc(2026, 5, 14, 23, 38, 44, 61000),
        timestamp_text="2026-05-14T23:38:44.061+00:00",
        hostname="internal",
    ),
    ok(
        PEXIP_5424,
        PEXIP_5424[PEXIP_5424.index(b"2026-11-26 ") :],
        id="pexip-in-rfc5424",
        format=RFC5424,
        facility=16,
        severity=6,
        timestamp=utc(2026, 11, 26, 10, 0, 0, 123456),
        timestamp_text="2026-11-26T10:00:00.123456+00:00",
        hostname="conf-node-01",
        app_name="pexip",
    ),
    ok(
        b"<13>1 2026-11-26T11:00:00.123456+00:00 myhost root - - "
        b'[timeQuality tzKnown="1" isSynced="1" syncAccuracy="123"] hello',
        b"hello",
        id="logger-rfc5424",
        format=RFC5424,
        facility=1,
        severity=5,
        timestamp=utc(2026, 11, 26, 11, 0, 0, 123456),
        timestamp_text="2026-11-26T11:00:00.123456+00:00",
        hostname="myhost",
        app_name="root",
        structured_data='[timeQuality tzKnown="1" isSynced="1" syncAccuracy="123"]',
    ),
    ok(
        b'<13>1 2026-11-26T12:00:00.000001+01:00 myhost root 4242 - [timeQuality tzKnown="1" '
        b'isSynced="0"] hi',
        b"hi",
        id="logger-rfc5424-with-pid-and-offset",
        format=RFC5424,
        facility=1,
        severity=5,
        timestamp=utc(2026, 11, 26, 11, 0, 0, 1),
        timestamp_text="2026-11-26T12:00:00.000001+01:00",
        hostname="myhost",
        app_name="root",
        procid="4242",
        structured_data='[timeQuality tzKnown="1" isSynced="0"]',
    ),
    ok(
        b"<13>Nov 26 11:00:00 myhost root: hello",
        b"hello",
        id="logger-rfc3164",
        format=RFC3164,
        facility=1,
        severity=5,
        timestamp=utc(2024, 11, 26, 11),
        timestamp_text="Nov 26 11:00:00",
        hostname="myhost",
        app_name="root",
    ),
    ok(
        b"2025-03-07T19:06:53.123456789-05:00 node hello",
        b"hello",
        id="iso-nine-fraction-digits",
        format=ISO,
        timestamp=utc(2025, 3, 8, 0, 6, 53, 123456),
        timestamp_text="2025-03-07T19:06:53.123456789-05:00",
        hostname="node",
    ),
    ok(
        b"2016-12-31T23:59:60Z node leap",
        b"leap",
        id="iso-leap-second",
        format=ISO,
        timestamp=utc(2016, 12, 31, 23, 59, 59),
        timestamp_text="2016-12-31T23:59:60Z",
        hostname="node",
    ),
    ok(
        b"2025-03-07T19:06:53Z node",
        b"",
        id="iso-without-message",
        format=ISO,
        timestamp=utc(2025, 3, 7, 19, 6, 53),
        timestamp_text="2025-03-07T19:06:53Z",
        hostname="node",
    ),
]

ISO_RAW = [
    raw(b"2025-03-07T19:06:53Z", "iso", 20, "HOSTNAME", id="iso-without-hostname"),
    raw(b"2025-03-07T19:06:53Z  msg", "iso", 21, "HOSTNAME", id="iso-two-spaces"),
    raw(b"2025-03-07t19:06:53z node m", "iso", 10, "TIMESTAMP", id="iso-lower-case"),
    raw(b"2025-03-07T19:06:53 node m", "iso", 19, "TIMESTAMP", "offset", id="iso-no-offset"),
    raw(b"2017-07-09 13:45:29,919 Level=", "iso", 10, "TIMESTAMP", id="pexip-body-only"),
    raw(b"2025-03-07T19:06:53.1234567890Z n m", "iso", 29, "fraction", id="iso-ten-digits"),
    raw(b"2025-13-07T19:06:53Z node m", "iso", 5, "month", id="iso-month-13"),
    raw(b"2025-03-07T19:06:53Z n\xc3\xa9 m", "iso", 22, "HOSTNAME", id="iso-non-ascii-host"),
    raw(b"us-mns-wrk1 2014-08-01 13:14:02,030 Level=", "raw", 0, "<PRI>", id="pexip-s1-stripped"),
    raw(b"", "raw", 0, "empty", id="empty-frame"),
    raw(b"GET / HTTP/1.1", "raw", 0, "<PRI>", id="http-request"),
    raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "raw", 0, "<PRI>", id="tls-client-hello"),
    raw(b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 514", "raw", 0, "<PRI>", id="proxy-v1"),
    raw(b"\xff\xfe<13>x", "raw", 0, "<PRI>", id="invalid-utf8-start"),
]


@pytest.mark.parametrize(("frame", "expected"), REAL_LINES)
def test_real_lines(frame: bytes, expected: SyslogMessage) -> None:
    check_ok(frame, expected)


@pytest.mark.parametrize(("frame", "prefix", "column", "words"), ISO_RAW)
def test_pri_less_lines_rejected_with_column(
    frame: bytes, prefix: str, column: int, words: tuple[str, ...]
) -> None:
    check_raw(frame, prefix, column, words)


def test_pexip_body_survives_decoding() -> None:
    message = parse_syslog(S2_LINE_1)
    assert decode_message(S2_LINE_1, message).startswith('2017-07-09 13:45:29,919 Level="INFO"')
    assert "…" in decode_message(S2_LINE_1, message)


# --- The message object ------------------------------------------------------------------------


def test_fast_path_builds_a_genuine_frozen_syslog_message() -> None:
    message = parse_syslog(PEXIP_5424)
    assert type(message) is SyslogMessage
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.hostname = "other"  # type: ignore[misc]
    twin = dataclasses.replace(message)
    assert twin == message
    assert hash(twin) == hash(message)


def test_decode_message_strips_only_trailing_line_ends() -> None:
    frame = b"<14>1 - h a - - - \r\n a \x00b \r\n\x00"
    assert decode_message(frame, parse_syslog(frame)) == "\r\n a \x00b "


def test_raw_message_decodes_the_whole_frame() -> None:
    frame = b"junk \xff\r\n"
    message = parse_syslog(frame)
    assert message.format is SyslogFormat.RAW
    assert decode_message(frame, message) == "junk \ufffd"


# --- Properties --------------------------------------------------------------------------------

SYSLOGISH_PREFIXES = [
    b"",
    b"<",
    b"<13>",
    b"<13>1",
    b"<13>1 ",
    b"<165>1 2025-03-07T19:06:53.1Z ",
    b"<165>1 2025-03-07T19:06:53Z h a p m ",
    b"<165>1 - h a p m [",
    b'<165>1 - h a p m [a@1 x="',
    b"<13>Mar  7 19:06:53 ",
    b"<189>12: ",
    b"Mar  7 19:06:53 ",
    b"2025-03-07T19:06:53Z ",
    b"2025-03-07T19:06:53.123456789+05:30 h ",
]


@settings(max_examples=300, deadline=None)
@given(prefix=st.sampled_from(SYSLOGISH_PREFIXES), tail=st.binary(max_size=120))
def test_parse_syslog_never_raises(prefix: bytes, tail: bytes) -> None:
    frame = prefix + tail
    message = parse_syslog(frame, received_at=RECEIVED)
    assert isinstance(message, SyslogMessage)
    assert 0 <= message.msg_offset <= len(frame)
    if message.format is SyslogFormat.RAW:
        assert message.error is not None
        assert "internal" not in message.error
        assert message.msg_offset == 0
    else:
        assert message.error is None
    if message.timestamp is not None:
        assert message.timestamp.tzinfo is UTC
    decode_message(frame, message)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='[]"\\= ab@1\x01é', max_size=30))
def test_structured_data_fast_and_precise_checks_agree(sd: str) -> None:
    frame = b"<14>1 - h a - - " + sd.encode() + b" m"
    message = parse_syslog(frame)
    # parse_syslog checks SD with a regex and falls back to the scanner; _rfc5424 always scans.
    assert message == _rfc5424(frame, 14, 4)
    if message.structured_data is not None:
        assert sd.startswith(message.structured_data)
        parse_structured_data(message.structured_data)
    elif message.format is SyslogFormat.RAW and sd.startswith("["):
        # A valid SD followed by " m" always parses, so a rejected frame means a bad SD text.
        with pytest.raises(ValueError):
            parse_structured_data(sd)


PRINTABLE = "".join(chr(code) for code in range(33, 127))
NAME_CHARS = "".join(char for char in PRINTABLE if char not in '="]')


def header_field(max_size: int) -> st.SearchStrategy[str | None]:
    text = st.text(alphabet=PRINTABLE, min_size=1, max_size=max_size).filter(lambda s: s != "-")
    return st.none() | text


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


sd_names = st.text(alphabet=NAME_CHARS, min_size=1, max_size=32)
sd_elements = st.lists(
    st.tuples(sd_names, st.dictionaries(sd_names, st.text(max_size=12), max_size=3)),
    max_size=3,
    unique_by=lambda element: element[0],
)


@st.composite
def timestamps(draw: st.DrawFn) -> tuple[str, datetime] | None:
    if draw(st.booleans()):
        return None
    local = draw(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)))
    digits = draw(st.integers(0, 6))
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    if minutes == 0:
        offset = draw(st.sampled_from(["Z", "+00:00", "-00:00"]))
    else:
        sign = "+" if minutes > 0 else "-"
        offset = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    fraction = f"{local.microsecond:06d}"[:digits]
    text = (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}T"
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
        + (f".{fraction}" if digits else "")
        + offset
    )
    microsecond = int(fraction.ljust(6, "0")) if digits else 0
    zone = timezone(timedelta(minutes=minutes))
    expected = local.replace(microsecond=microsecond, tzinfo=zone).astimezone(UTC)
    return text, expected


@settings(max_examples=300, deadline=None)
@given(
    pri=st.integers(0, 191),
    stamp=timestamps(),
    hostname=header_field(255),
    app_name=header_field(48),
    procid=header_field(128),
    msgid=header_field(32),
    elements=sd_elements,
    msg=st.none() | st.binary(max_size=40),
    bom=st.booleans(),
)
def test_rfc5424_round_trip(
    pri: int,
    stamp: tuple[str, datetime] | None,
    hostname: str | None,
    app_name: str | None,
    procid: str | None,
    msgid: str | None,
    elements: list[tuple[str, dict[str, str]]],
    msg: bytes | None,
    bom: bool,
) -> None:
    sd = "".join(
        "[" + sd_id + "".join(f' {k}="{escape(v)}"' for k, v in params.items()) + "]"
        for sd_id, params in elements
    )
    fields = [stamp[0] if stamp else None, hostname, app_name, procid, msgid, sd or None]
    header = f"<{pri}>1 " + " ".join("-" if field is None else field for field in fields)
    frame = header.encode()
    body_start = len(frame) + 1 if msg is not None else len(frame)
    if msg is not None:
        frame += b" " + (BOM if bom else b"") + msg
    message = parse_syslog(frame)
    if frame.startswith(BOM, body_start):
        body_start += 3
    assert message == SyslogMessage(
        RFC5424,
        facility=pri >> 3,
        severity=pri & 7,
        timestamp=stamp[1] if stamp else None,
        timestamp_text=stamp[0] if stamp else None,
        hostname=hostname,
        app_name=app_name,
        procid=procid,
        msgid=msgid,
        structured_data=sd.replace("\x00", "\ufffd") or None,
        msg_offset=body_start,
    )
    stored = {
        sd_id: {name: value.replace("\x00", "\ufffd") for name, value in params.items()}
        for sd_id, params in elements
    }
    assert parse_structured_data(message.structured_data or "-") == stored
    assert message == _rfc5424(frame, pri, len(str(pri)) + 2)  # fast path == precise path


# --- What the store can hold -----------------------------------------------------------------

LONG = b"h" * 256
BSD_TIME = b"Mar  7 19:06:53"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ok(
            b"<13>" + BSD_TIME + b" " + b"h" * 255 + b" app: m",
            b"m",
            id="bsd-hostname-255-kept",
            **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
            timestamp_text="Mar  7 19:06:53",
            hostname="h" * 255,
            app_name="app",
        ),
        ok(
            b"<13>" + BSD_TIME + b" " + LONG + b" app: m",
            LONG + b" app: m",
            id="bsd-hostname-256-starts-msg",
            **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
            timestamp_text="Mar  7 19:06:53",
        ),
        ok(
            b"<13>" + BSD_TIME + b" host " + b"t" * 64 + b"[" + b"1" * 128 + b"]: m",
            b"m",
            id="bsd-tag-64-pid-128-kept",
            **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
            timestamp_text="Mar  7 19:06:53",
            hostname="host",
            app_name="t" * 64,
            procid="1" * 128,
        ),
        ok(
            b"<13>" + BSD_TIME + b" host " + b"t" * 65 + b": m",
            b"t" * 65 + b": m",
            id="bsd-tag-65-starts-msg",
            **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
            timestamp_text="Mar  7 19:06:53",
            hostname="host",
        ),
        ok(
            b"<13>" + BSD_TIME + b" host app[" + b"1" * 129 + b"]: m",
            b"app[" + b"1" * 129 + b"]: m",
            id="bsd-pid-129-starts-msg",
            **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
            timestamp_text="Mar  7 19:06:53",
            hostname="host",
        ),
        # Too long for a TAG is no reason to take it for a HOSTNAME.
        ok(
            b"<13>" + BSD_TIME + b" " + b"t" * 100 + b": m",
            b"t" * 100 + b": m",
            id="bsd-long-tag-is-not-a-hostname",
            **bsd(facility=1, severity=5, timestamp=utc(2025, 3, 7, 19, 6, 53)),
            timestamp_text="Mar  7 19:06:53",
        ),
        ok(
            b"2026-03-02T10:00:00Z " + b"h" * 255 + b" m",
            b"m",
            id="iso-hostname-255-kept",
            format=ISO,
            timestamp=utc(2026, 3, 2, 10),
            timestamp_text="2026-03-02T10:00:00Z",
            hostname="h" * 255,
        ),
        ok(
            b'<14>1 - h a - - [x@1 v="a\x00b"] m\x00',
            b"m\x00",
            id="sd-nul-replaced",
            format=RFC5424,
            facility=1,
            severity=6,
            hostname="h",
            app_name="a",
            structured_data='[x@1 v="a\ufffdb"]',
        ),
    ],
)
def test_header_fields_at_the_column_limits(frame: bytes, expected: SyslogMessage) -> None:
    check_ok(frame, expected)


@pytest.mark.parametrize(
    ("frame", "prefix", "column", "words"),
    [
        raw(b"2026-03-02T10:00:00Z " + LONG + b" m", "iso", 276, "HOSTNAME too long", id="iso"),
        raw(b"<14>1 - " + LONG + b" a - - - m", "rfc5424", 263, "HOSTNAME too long", id="5424"),
        raw(b"<14>1 - h " + b"a" * 49 + b" - - - m", "rfc5424", 58, "APP-NAME", id="app-name"),
        raw(b"<14>1 - h a " + b"p" * 129 + b" - - m", "rfc5424", 140, "PROCID", id="procid"),
        raw(b"<14>1 - h a p " + b"m" * 33 + b" - m", "rfc5424", 46, "MSGID", id="msgid"),
    ],
)
def test_strict_formats_refuse_fields_too_long_to_store(
    frame: bytes, prefix: str, column: int, words: tuple[str, ...]
) -> None:
    check_raw(frame, prefix, column, words)


def test_sd_nul_is_replaced_in_the_parsed_copy_only() -> None:
    frame = b'<14>1 - h a - - [x@1 v="\x00"][y@1 w="\\"\x00\\]"]'
    message = parse_syslog(frame)
    assert message == _rfc5424(frame, 14, 4)
    assert parse_structured_data(message.structured_data or "") == {
        "x@1": {"v": "\ufffd"},
        "y@1": {"w": '"\ufffd]'},
    }


def _column_limits() -> dict[str, int | None]:
    """The text columns of `messages` a SyslogMessage fills, with their lengths (None: Text)."""
    from sqlalchemy import String

    from app.db.models import messages

    names = [field.name for field in dataclasses.fields(SyslogMessage)]
    return {
        name: messages.c[name].type.length
        for name in names
        if name in messages.c and isinstance(messages.c[name].type, String)
    }


COLUMN_LIMITS = _column_limits()


def test_the_stored_text_fields_have_their_columns() -> None:
    # The rest of the header is read from the stored frame.
    assert set(COLUMN_LIMITS) == {"format", "hostname", "error"}


# Frames that reach the header fields, with the bytes the store has trouble with.
hostile_tails = st.lists(
    st.sampled_from([b"\x00", b" ", b":", b"[", b"]", b'"', b"=", b"h" * 70, b"7" * 130])
    | st.binary(max_size=8),
    max_size=12,
).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(prefix=st.sampled_from(SYSLOGISH_PREFIXES), tail=hostile_tails | st.binary(max_size=300))
def test_every_field_fits_its_column_and_holds_no_nul(prefix: bytes, tail: bytes) -> None:
    message = parse_syslog(prefix + tail, received_at=RECEIVED)
    for name, limit in COLUMN_LIMITS.items():
        value = getattr(message, name)
        if value is None:
            continue
        text = str(value)
        assert "\x00" not in text, (name, text)
        assert limit is None or len(text) <= limit, (name, len(text))
