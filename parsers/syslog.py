"""Parse one syslog frame into its header fields and the offset at which its MSG starts.

The frame is the bytes of one message as the framer cut it (no octet count, no LF). The MSG is not
copied or decoded here: callers keep the frame, slice it at ``msg_offset`` and decode it lazily
with :func:`decode_message`. Structured data is kept as the text that was sent and is only split
into a dictionary on demand by :func:`parse_structured_data`.

Shapes are tried in this order:

1. ``<PRI>1 `` : strict RFC 5424.
2. ``<PRI>`` : RFC 3164 with its common variants (see :func:`parse_syslog`).
3. A PRI-less line starting with an RFC 3339 timestamp, SP, host, SP: Pexip's unified-log shape
   (``SyslogFormat.ISO``).
4. A PRI-less BSD line ``Mmm dd hh:mm:ss host tag: msg``: RFC 3164 without facility/severity.
5. Anything else is ``SyslogFormat.RAW`` with the reason of the most plausible attempt.

Error columns are 0-based byte offsets into the frame (``frame[column]`` is the offending byte,
or ``column == len(frame)`` when the frame ends too early).

Every header field fits its column in the store (parsers/limits.py) and no text holds a NUL;
see :func:`parse_syslog` for what happens at the limits.
"""

import calendar
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from typing import Final

from parsers.limits import (
    APP_NAME_MAX,
    HOSTNAME_MAX,
    MSGID_MAX,
    NUL_REPLACEMENT,
    PROCID_MAX,
    TIMESTAMP_TEXT_MAX,
)

__all__ = [
    "SyslogFormat",
    "SyslogMessage",
    "decode_message",
    "parse_structured_data",
    "parse_syslog",
]


class SyslogFormat(StrEnum):
    """The grammar a frame was parsed with."""

    RFC5424 = "rfc5424"
    RFC3164 = "rfc3164"
    ISO = "iso"  # PRI-less `ISO-time host msg` (Pexip unified log)
    RAW = "raw"  # fits nothing; see SyslogMessage.error


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    """The header of one frame; the MSG stays in the frame, from ``msg_offset`` on."""

    format: SyslogFormat
    facility: int | None = None
    severity: int | None = None
    timestamp: datetime | None = None  # timezone-aware UTC; None if absent, NIL or unparseable
    timestamp_text: str | None = None  # the header timestamp exactly as sent
    hostname: str | None = None
    app_name: str | None = None  # RFC 3164: the TAG
    procid: str | None = None  # RFC 3164: the [pid]
    msgid: str | None = None
    structured_data: str | None = None  # raw SD text as sent; None for NIL or absent
    msg_offset: int = 0  # MSG is frame[msg_offset:] (after the BOM, if any)
    error: str | None = None  # RAW only: "<format>: <what> at column <n>: <detail>"


class _MessageSlots:
    """A mutable twin of SyslogMessage with the very same slots.

    The frozen dataclass __init__ stores each of its 12 fields through object.__setattr__, which
    measured about 2 µs per message on the 2-core reference machine: most of the per-message
    budget. Filling this twin's slots and then re-classing it to SyslogMessage costs about a
    quarter of that. CPython refuses the __class__ assignment unless both layouts are identical,
    so a drift between the two classes fails loudly instead of corrupting objects.

    Compiled with mypyc, both are native classes, which refuse the __class__ assignment, and
    the frozen __init__ stays interpreted; there `_message` stores into a new SyslogMessage's
    slots directly, which native code does without the frozen __setattr__.
    """

    __slots__ = SyslogMessage.__slots__

    format: SyslogFormat
    facility: int | None
    severity: int | None
    timestamp: datetime | None
    timestamp_text: str | None
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    structured_data: str | None
    msg_offset: int
    error: str | None


def _message(
    format: SyslogFormat,
    facility: int | None,
    severity: int | None,
    timestamp: datetime | None,
    timestamp_text: str | None,
    hostname: str | None,
    app_name: str | None,
    procid: str | None,
    msgid: str | None,
    structured_data: str | None,
    msg_offset: int,
) -> SyslogMessage:
    """Build a parsed (non-RAW) SyslogMessage without the frozen __init__ (see _MessageSlots)."""
    if _NATIVE:
        message = SyslogMessage.__new__(SyslogMessage)
        message.format = format  # type: ignore[misc]
        message.facility = facility  # type: ignore[misc]
        message.severity = severity  # type: ignore[misc]
        message.timestamp = timestamp  # type: ignore[misc]
        message.timestamp_text = timestamp_text  # type: ignore[misc]
        message.hostname = hostname  # type: ignore[misc]
        message.app_name = app_name  # type: ignore[misc]
        message.procid = procid  # type: ignore[misc]
        message.msgid = msgid  # type: ignore[misc]
        message.structured_data = structured_data  # type: ignore[misc]
        message.msg_offset = msg_offset  # type: ignore[misc]
        message.error = None  # type: ignore[misc]
        return message
    slots = _MessageSlots()
    slots.format = format
    slots.facility = facility
    slots.severity = severity
    slots.timestamp = timestamp
    slots.timestamp_text = timestamp_text
    slots.hostname = hostname
    slots.app_name = app_name
    slots.procid = procid
    slots.msgid = msgid
    slots.structured_data = structured_data
    slots.msg_offset = msg_offset
    slots.error = None
    slots.__class__ = SyslogMessage  # type: ignore[assignment]
    return slots  # type: ignore[return-value]


def _native() -> bool:
    """Whether this module runs compiled by mypyc: its native classes refuse the re-classing
    `_message` relies on in pure Python (see _MessageSlots)."""
    try:
        _MessageSlots().__class__ = SyslogMessage  # type: ignore[assignment]
    except TypeError:
        return True
    return False


_NATIVE: Final = _native()


class _Malformed(ValueError):
    """Input breaks the grammar at ``column`` (a 0-based offset)."""

    def __init__(self, what: str, column: int, detail: str) -> None:
        super().__init__(f"{what} at column {column}: {detail}")
        self.column = column


# --- tables ----------------------------------------------------------------------------------

_BOM: Final = b"\xef\xbb\xbf"
# Every legal PRI text maps to its value, so one lookup checks digits, range and leading zeros.
_PRI: Final[dict[bytes, int]] = {str(pri).encode(): pri for pri in range(192)}
# The same for the first SP-delimited token of an RFC 5424 frame, "<PRI>1".
_PRI_VERSION_1: Final[dict[bytes, int]] = {b"<%d>1" % pri: pri for pri in range(192)}
# translate(None, X) deletes X; anything left over is a byte outside the allowed set.
_PRINTABLE: Final = bytes(range(33, 127))
_PRINTABLE_AND_SP: Final = bytes(range(32, 127))


def _shape_table() -> bytes:
    table = bytearray(b"?" * 256)
    for byte in b"0123456789":
        table[byte] = ord("0")
    for byte in b"-:.TZ+":
        table[byte] = byte
    return bytes(table)


def _timestamp_shapes(max_fraction: int) -> frozenset[bytes]:
    fractions = [b""] + [b"." + b"0" * digits for digits in range(1, max_fraction + 1)]
    return frozenset(
        b"0000-00-00T00:00:00" + fraction + offset
        for fraction in fractions
        for offset in (b"Z", b"+00:00", b"-00:00")
    )


# A timestamp translated through _SHAPE maps every digit to "0"; one set lookup then checks the
# RFC 3339 shape, which datetime.fromisoformat alone is far too lenient for (it takes "t", ",5",
# "+0530", "+05", a missing offset, ...). fromisoformat then checks the values.
_SHAPE: Final = _shape_table()
_RFC5424_SHAPES: Final = _timestamp_shapes(6)
_ISO_SHAPES: Final = _timestamp_shapes(9)

# One pattern source for bytes (frames) and str (parse_structured_data), so both agree.
_SD_NAME = r"[\x21\x23-\x3c\x3e-\x5c\x5e-\x7e]{1,32}"  # printable ASCII except = ] "
# Unrolled and atomic: far faster than (?:[^"\\\]]|\\.)* and never backtracks into a value.
_SD_VALUE = r'(?>[^"\\\]]*(?:\\.[^"\\\]]*)*)'
_SD_ELEMENT_SOURCE = r"\[(" + _SD_NAME + r")((?: " + _SD_NAME + r'="' + _SD_VALUE + r'")*)\]'
_SD_ELEMENT_BYTES: Final = re.compile(_SD_ELEMENT_SOURCE.encode("ascii"), re.DOTALL)
_SD_ELEMENT_TEXT: Final = re.compile(_SD_ELEMENT_SOURCE, re.DOTALL)
_SD_PARAM_TEXT: Final = re.compile(r" (" + _SD_NAME + r')="(' + _SD_VALUE + r')"', re.DOTALL)
_SD_ESCAPE: Final = re.compile(r'\\(["\\\]])')
_SD_VALUE_RUN: Final = re.compile(_SD_VALUE, re.DOTALL)

_MONTHS: Final = {
    name.encode("ascii"): number for number, name in enumerate(calendar.month_abbr) if name
}
# Cisco prefixes "*" (clock not authoritative) or "." (clock lost sync); the zone word may be
# followed by the colon that ends the header.
_BSD_TIMESTAMP: Final = re.compile(
    rb"[*.]?(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}(\d\d?)(?: (\d{4}))?"
    rb" (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?: (UTC|GMT))?(?=:? |:?\Z)"
)
_ISO_TIMESTAMP: Final = re.compile(
    rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)(?=:? |:?\Z)"
)
_CISCO_SEQUENCE: Final = re.compile(rb"\d{1,10}: ")
_MISSING_LT: Final = re.compile(rb"\d{1,3}>")
_NOT_PRINTABLE: Final = re.compile(rb"[^\x21-\x7e]")
_HALF_YEAR: Final = timedelta(days=182)
# RFC 5424's own APP-NAME limit, narrower than the column (which also holds RFC 3164 TAGs).
_RFC5424_APP_NAME_MAX: Final = 48
_RFC5424_FIELDS: Final = (
    ("HOSTNAME", HOSTNAME_MAX),
    ("APP-NAME", _RFC5424_APP_NAME_MAX),
    ("PROCID", PROCID_MAX),
    ("MSGID", MSGID_MAX),
)


# --- public API ------------------------------------------------------------------------------


def parse_syslog(
    frame: bytes, *, received_at: datetime | None = None, default_tz: tzinfo = UTC
) -> SyslogMessage:
    """Parse one frame into a SyslogMessage; never raises, whatever the bytes.

    ``received_at`` (default: now, UTC; a naive value is taken as UTC) anchors the year of RFC 3164
    timestamps, which have none: the year that puts the timestamp closest to it wins, so
    ``Dec 31 23:59:59`` received on Jan 1 is last year. ``default_tz`` is the zone of RFC 3164
    timestamps that carry no zone word.

    Policy:

    - PRI must be 0-191 without leading zeros in every format; ``<192>``, ``<014>``, ``<1x>`` and
      ``<>`` give RAW (no "unknown facility" mapping).
    - After ``<PRI>``, digits followed by SP or the end of the frame (or 1-3 digits followed by
      ``-``) are taken as an RFC 5424 VERSION. Such a frame is parsed strictly and a failure is
      RAW with the RFC 5424 error: it is never re-read as RFC 3164, which would turn the
      timestamp into a hostname and the hostname into a tag. Only VERSION 1 is accepted. Digits
      followed by ``:`` (Cisco counter) or a 4-digit year followed by ``-`` are RFC 3164.
    - RFC 5424 pragmatism: a leap second (``:60``) is accepted and clamped to ``:59`` (the raw
      text stays in ``timestamp_text``); CR, LF and NUL bytes straight after the STRUCTURED-DATA
      are accepted as the end of the frame (CRLF senders, loggen's counted LF); the MSG after a
      BOM is not checked for valid UTF-8. STRUCTURED-DATA itself must be valid UTF-8.
    - RFC 3164 is lenient and never fails once the PRI is valid: an unparseable timestamp (e.g.
      ``Feb 30``) gives ``timestamp=None`` with ``timestamp_text`` kept; with no timestamp there
      is no hostname either. A token ending in ``:`` (``app:``, ``app[123]:``) is the TAG; the
      token after the timestamp is the hostname unless it is such a TAG. A word without a colon
      is not a TAG: it starts the MSG, so no content is lost (``host app msg`` gives
      ``app_name=None`` and MSG ``app msg``).
    - ISO (PRI-less) lines are strict: an RFC 3339 timestamp with upper-case ``T``/``Z``, 1-9
      fraction digits (truncated to microseconds) and an offset, then a printable hostname.
    """
    try:
        # Splitting first costs non-5424 frames one split but spares the hot path a find(),
        # a slice and a lookup: one dict lookup on the first token checks PRI and VERSION.
        parts = frame.split(b" ", 6)
        pri = _PRI_VERSION_1.get(parts[0])
        if pri is not None:
            message = _rfc5424_fast(frame, pri, parts) if len(parts) == 7 else None
            return message if message is not None else _rfc5424(frame, pri, len(parts[0]) - 1)
        if frame[:1] == b"<":
            return _with_pri(frame, received_at, default_tz)
        if frame[:1].isdigit():
            return _iso_line(frame, parts)
        if not frame:
            return _raw("raw: empty frame at column 0: no bytes")
        if _BSD_TIMESTAMP.match(frame):
            return _rfc3164(frame, 0, None, received_at, default_tz)
        if frame[:3] in _MONTHS:
            return _raw(
                "rfc3164: bad TIMESTAMP at column 0: expected 'Mmm dd [yyyy ]hh:mm:ss[.fff]'"
            )
        return _raw(
            "raw: no syslog header at column 0: expected '<PRI>', an RFC 3339 timestamp"
            " or 'Mmm dd hh:mm:ss'"
        )
    except Exception as exc:  # a bug must not take the receiver down; RAW keeps the bytes
        return _raw(f"raw: internal parser error at column 0: {exc!r}")


def parse_structured_data(sd: str) -> dict[str, dict[str, str]]:
    """Split RFC 5424 STRUCTURED-DATA text into ``{SD-ID: {PARAM-NAME: value}}``.

    Values are unescaped (``\\"``, ``\\\\``, ``\\]``; a backslash before any other character stays
    literal). ``"-"`` (NILVALUE) and ``""`` give ``{}``. A PARAM-NAME repeated inside one element
    keeps its last value. Raises ValueError naming the 0-based column in ``sd`` on bad syntax or a
    duplicate SD-ID.
    """
    if sd in ("", "-"):
        return {}
    result: dict[str, dict[str, str]] = {}
    position = 0
    while position < len(sd):
        match = _SD_ELEMENT_TEXT.match(sd, position)
        if match is None or match[1] in result:
            end = _scan_structured_data(sd, 0)  # raises with the precise column...
            # ...unless the elements are fine and something else follows them.
            raise _Malformed("bad STRUCTURED-DATA", end, f"unexpected {sd[end : end + 1]!r}")
        params: dict[str, str] = {}
        for param in _SD_PARAM_TEXT.finditer(sd, match.start(2), match.end(2)):
            value = param[2]
            params[param[1]] = _SD_ESCAPE.sub(r"\1", value) if "\\" in value else value
        result[match[1]] = params
        position = match.end()
    return result


def decode_message(frame: bytes, message: SyslogMessage) -> str:
    """Return the MSG of ``frame`` as text: bad UTF-8 becomes U+FFFD, trailing CR/LF/NUL go."""
    return frame[message.msg_offset :].rstrip(b"\r\n\x00").decode("utf-8", "replace")


# --- RFC 5424 --------------------------------------------------------------------------------


def _rfc5424_fast(frame: bytes, pri: int, parts: list[bytes]) -> SyslogMessage | None:
    """Parse the common well-formed shape cheaply; None sends the frame to the precise parser.

    ``parts`` is ``frame.split(b" ", 6)`` (7 items). Whenever this returns a message it must be
    exactly what _rfc5424 returns.
    """
    _, ts, host, app, procid, msgid, rest = parts
    if (
        not (host and app and procid and msgid)
        or len(host) > HOSTNAME_MAX
        or len(app) > _RFC5424_APP_NAME_MAX
        or len(procid) > PROCID_MAX
        or len(msgid) > MSGID_MAX
    ):
        return None
    sd_start = len(frame) - len(rest)
    if frame[:sd_start].translate(None, _PRINTABLE_AND_SP):
        return None
    if ts == b"-":
        timestamp = None
        timestamp_text = None
    else:
        # ts[-2] is the tens of the offset minutes, which fromisoformat lets run to 99.
        if ts.translate(_SHAPE) not in _RFC5424_SHAPES or (ts[-1] != 90 and ts[-2] > 53):
            return None
        timestamp_text = ts.decode()
        try:
            timestamp = datetime.fromisoformat(timestamp_text)
            if timestamp.tzinfo is not UTC:
                timestamp = timestamp.astimezone(UTC)
        except (ValueError, OverflowError):  # leap second, Feb 30, year 0, ... : precise path
            return None
    end = len(frame)
    if rest[:1] == b"-":
        structured_data = None
        if len(rest) == 1:
            offset = end
        elif rest[1] == 32:
            offset = sd_start + 2
        else:
            return None
    else:
        sd_end = _structured_data_end(frame, sd_start)
        if sd_end < 0:
            return None
        if sd_end == end:
            offset = end
        elif frame[sd_end] == 32:
            offset = sd_end + 1
        else:
            return None
        try:
            structured_data = _storable(frame[sd_start:sd_end].decode())
        except UnicodeDecodeError:
            return None
    header = (
        host.decode() if host != b"-" else None,
        app.decode() if app != b"-" else None,
        procid.decode() if procid != b"-" else None,
        msgid.decode() if msgid != b"-" else None,
    )
    return _rfc5424_message(frame, pri, timestamp, timestamp_text, header, structured_data, offset)


def _rfc5424_message(
    frame: bytes,
    pri: int,
    timestamp: datetime | None,
    timestamp_text: str | None,
    header: Sequence[str | None],
    structured_data: str | None,
    offset: int,
) -> SyslogMessage:
    """The message of a parsed RFC 5424 frame: `header` is HOSTNAME, APP-NAME, PROCID and
    MSGID; MSG starts at `offset`, after a BOM if there is one."""
    if frame[offset : offset + 1] == b"\xef" and frame.startswith(_BOM, offset):
        offset += 3
    hostname, app_name, procid, msgid = header
    return _message(
        SyslogFormat.RFC5424,
        pri >> 3,
        pri & 7,
        timestamp,
        timestamp_text,
        hostname,
        app_name,
        procid,
        msgid,
        structured_data,
        offset,
    )


def _structured_data_end(frame: bytes, position: int) -> int:
    """End of the SD elements starting at ``frame[position]``, or -1 if anything is off."""
    match = _SD_ELEMENT_BYTES.match(frame, position)
    if match is None:
        return -1
    end = match.end()
    if frame.startswith(b"[", end):
        seen = {match[1]}
        while frame.startswith(b"[", end):
            match = _SD_ELEMENT_BYTES.match(frame, end)
            if match is None or match[1] in seen:
                return -1
            seen.add(match[1])
            end = match.end()
    return end


def _rfc5424(frame: bytes, pri: int, position: int) -> SyslogMessage:
    """Parse RFC 5424 precisely from VERSION at ``position``; RAW with the error if it fails."""
    try:
        return _rfc5424_precise(frame, pri, position)
    except _Malformed as exc:
        return _raw(f"rfc5424: {exc}")


def _rfc5424_precise(frame: bytes, pri: int, position: int) -> SyslogMessage:
    """Parse RFC 5424 after ``<PRI>`` byte by byte, raising _Malformed at the first fault."""
    end = _digits_end(frame, position)
    version = frame[position:end]
    if not version or len(version) > 3 or version[0] == 48:
        raise _Malformed(
            "bad VERSION",
            position,
            f"expected 1-3 digits not starting with 0, got {_show(version or frame[end:][:1])}",
        )
    if version != b"1":
        raise _Malformed("unsupported VERSION", position, f"{version.decode()}; only 1 is known")
    position = _after_space(frame, end, "VERSION")

    token, end = _header_field(frame, position, "TIMESTAMP", TIMESTAMP_TEXT_MAX)
    if token == b"-":
        timestamp = None
        timestamp_text = None
    else:
        timestamp_text = token.decode("ascii")
        timestamp = _rfc3339(timestamp_text, position, 6)
    position = _after_space(frame, end, "TIMESTAMP")

    fields: list[str | None] = []
    for name, limit in _RFC5424_FIELDS:
        token, end = _header_field(frame, position, name, limit)
        fields.append(None if token == b"-" else token.decode("ascii"))
        position = _after_space(frame, end, name)

    size = len(frame)
    if position >= size:
        raise _Malformed("missing STRUCTURED-DATA", position, "the frame ends after MSGID")
    if frame[position] == 45:  # "-"
        structured_data = None
        end = position + 1
    elif frame[position] == 91:  # "["
        end = _scan_structured_data(frame.decode("latin-1"), position)
        try:
            structured_data = _storable(frame[position:end].decode())
        except UnicodeDecodeError as exc:
            raise _Malformed("bad STRUCTURED-DATA", position + exc.start, "invalid UTF-8") from None
    else:
        raise _Malformed(
            "bad STRUCTURED-DATA", position, f"expected '-' or '[', got {_show_at(frame, position)}"
        )

    if end == size:
        offset = size
    elif frame[end] == 32:
        offset = end + 1
    elif not frame[end:].strip(b"\r\n\x00"):
        offset = end
    else:
        raise _Malformed(
            "missing SP after STRUCTURED-DATA", end, f"got {_show_at(frame, end)} before MSG"
        )
    return _rfc5424_message(frame, pri, timestamp, timestamp_text, fields, structured_data, offset)


def _header_field(frame: bytes, position: int, name: str, limit: int) -> tuple[bytes, int]:
    """Return one SP-delimited header token and its end; it must be 1-``limit`` printable bytes."""
    size = len(frame)
    if position >= size:
        raise _Malformed(f"missing {name}", position, "the frame ends here")
    end = frame.find(b" ", position)
    if end < 0:
        end = size
    token = frame[position:end]
    if not token:
        raise _Malformed(f"empty {name}", position, "two spaces in a row")
    bad = _NOT_PRINTABLE.search(token)
    if bad is not None:
        raise _Malformed(
            f"bad {name}", position + bad.start(), f"byte 0x{bad[0][0]:02x} is not printable ASCII"
        )
    if len(token) > limit:
        raise _Malformed(
            f"{name} too long", position + limit, f"{len(token)} bytes, at most {limit} allowed"
        )
    return token, end


def _after_space(frame: bytes, position: int, name: str) -> int:
    if position >= len(frame):
        raise _Malformed(f"missing SP after {name}", position, "the frame ends here")
    if frame[position] != 32:
        raise _Malformed(f"missing SP after {name}", position, f"got {_show_at(frame, position)}")
    return position + 1


def _rfc3339(text: str, column: int, max_fraction: int) -> datetime:
    """Parse an RFC 3339 timestamp precisely, converted to UTC; ``column`` is where text starts.

    Accepts a leap second and clamps it to :59. Raises _Malformed at the offending character.
    """
    size = len(text)

    def fail(index: int, detail: str) -> _Malformed:
        return _Malformed("bad TIMESTAMP", column + index, detail)

    def number(index: int, width: int) -> int:
        for at in range(index, index + width):
            if at >= size:
                raise fail(at, "the timestamp ends early")
            if not "0" <= text[at] <= "9":
                raise fail(at, f"expected a digit, got {text[at]!r}")
        return int(text[index : index + width])

    def literal(index: int, char: str) -> None:
        if index >= size:
            raise fail(index, f"the timestamp ends where {char!r} belongs")
        if text[index] != char:
            raise fail(index, f"expected {char!r}, got {text[index]!r}")

    year = number(0, 4)
    literal(4, "-")
    month = number(5, 2)
    literal(7, "-")
    day = number(8, 2)
    literal(10, "T")
    hour = number(11, 2)
    literal(13, ":")
    minute = number(14, 2)
    literal(16, ":")
    second = number(17, 2)
    index = 19
    microsecond = 0
    if index < size and text[index] == ".":
        end = index + 1
        while end < size and "0" <= text[end] <= "9":
            end += 1
        digits = end - index - 1
        if digits == 0:
            raise fail(end, "expected a digit after '.'")
        if digits > max_fraction:
            raise fail(index + 1 + max_fraction, f"more than {max_fraction} fraction digits")
        microsecond = int(text[index + 1 : end][:6].ljust(6, "0"))  # truncates nanoseconds
        index = end
    if index >= size:
        raise fail(index, "missing time offset ('Z' or '+hh:mm')")
    sign = text[index]
    if sign == "Z":
        zone: tzinfo = UTC
        index += 1
    elif sign in "+-":
        offset_hours = number(index + 1, 2)
        literal(index + 3, ":")
        offset_minutes = number(index + 4, 2)
        if offset_hours > 23:
            raise fail(index + 1, f"offset hour {offset_hours:02d} is not 00-23")
        if offset_minutes > 59:
            raise fail(index + 4, f"offset minute {offset_minutes:02d} is not 00-59")
        delta = timedelta(hours=offset_hours, minutes=offset_minutes)
        zone = UTC if not delta else timezone(delta if sign == "+" else -delta)
        index += 6
    else:
        raise fail(index, f"expected 'Z', '+' or '-', got {sign!r}")
    if index != size:
        raise fail(index, f"unexpected {text[index]!r} after the time offset")

    if year == 0:
        raise fail(0, "year 0000 does not exist")
    if not 1 <= month <= 12:
        raise fail(5, f"month {month:02d} is not 01-12")
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise fail(8, f"day {day:02d} does not exist in {year:04d}-{month:02d}")
    if hour > 23:
        raise fail(11, f"hour {hour:02d} is not 00-23")
    if minute > 59:
        raise fail(14, f"minute {minute:02d} is not 00-59")
    if second > 60:
        raise fail(17, f"second {second:02d} is not 00-60")
    # RFC 3339 allows a leap second; datetime cannot hold one, the raw text keeps it.
    parsed = datetime(year, month, day, hour, minute, min(second, 59), microsecond, tzinfo=zone)
    if zone is UTC:
        return parsed
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise fail(0, "out of range once converted to UTC") from None


def _scan_structured_data(text: str, position: int) -> int:
    """Check the SD elements starting at ``text[position]`` and return where they end.

    The slow twin of the SD regexes: it exists to name the offending column. Frames are passed
    decoded as Latin-1 so that character and byte columns coincide.
    """
    size = len(text)
    seen: set[str] = set()

    def fail(index: int, detail: str) -> _Malformed:
        return _Malformed("bad STRUCTURED-DATA", index, detail)

    def shown(index: int) -> str:
        return repr(text[index]) if index < size else "the end"

    def name_end(index: int, what: str) -> int:
        end = index
        while end < size and "!" <= text[end] <= "~" and text[end] not in '="]':
            end += 1
        if end == index:
            raise fail(index, f"empty {what} (got {shown(index)})")
        if end - index > 32:
            raise fail(index + 32, f"{what} longer than 32 characters")
        return end

    while True:
        if position >= size or text[position] != "[":
            raise fail(position, f"expected '[', got {shown(position)}")
        start = position + 1
        position = name_end(start, "SD-ID")
        sd_id = text[start:position]
        if sd_id in seen:
            raise fail(start, f"duplicate SD-ID {sd_id!r}")
        seen.add(sd_id)
        if position < size and text[position] not in " ]":
            raise fail(position, f"{shown(position)} is not allowed in an SD-ID")
        while True:
            if position >= size:
                raise fail(position, "missing ']' at the end of the element")
            if text[position] == "]":
                position += 1
                break
            if text[position] != " ":
                raise fail(position, f"expected ' ' or ']', got {shown(position)}")
            position = name_end(position + 1, "PARAM-NAME")
            if position >= size or text[position] != "=":
                raise fail(position, f"expected '=' after PARAM-NAME, got {shown(position)}")
            position += 1
            if position >= size or text[position] != '"':
                raise fail(position, f"PARAM-VALUE must be quoted, got {shown(position)}")
            position += 1
            while True:
                run = _SD_VALUE_RUN.match(text, position)  # skips characters and escapes in C
                position = run.end() if run else position
                if position >= size:
                    raise fail(position, "missing closing '\"' of PARAM-VALUE")
                char = text[position]
                if char == "\\":
                    position += 2
                elif char == '"':
                    break
                elif char == "]":
                    raise fail(position, "unescaped ']' in PARAM-VALUE")
                else:
                    position += 1
            position += 1
            if position < size and text[position] not in " ]":
                raise fail(position - 1, "unescaped '\"' in PARAM-VALUE")
        if position >= size or text[position] != "[":
            return position


# --- RFC 3164 --------------------------------------------------------------------------------


def _rfc3164(
    frame: bytes,
    position: int,
    pri: int | None,
    received_at: datetime | None,
    default_tz: tzinfo,
) -> SyslogMessage:
    """Parse a BSD header leniently from ``frame[position]``: every part may be missing."""
    size = len(frame)
    if pri is not None and frame[position : position + 1].isdigit():
        counter = _CISCO_SEQUENCE.match(frame, position)
        # Only skip the counter before what Cisco puts after it: a timestamp or a %MNEMONIC.
        if counter is not None and (
            frame.startswith(b"%", counter.end())
            or _BSD_TIMESTAMP.match(frame, counter.end())
            or _ISO_TIMESTAMP.match(frame, counter.end())
        ):
            position = counter.end()

    timestamp: datetime | None = None
    timestamp_text: str | None = None
    bsd = _BSD_TIMESTAMP.match(frame, position)
    if bsd is not None:
        timestamp_text = bsd[0].decode("ascii")
        timestamp = _bsd_datetime(bsd, received_at, default_tz)
        position = bsd.end()
    else:
        iso = _ISO_TIMESTAMP.match(frame, position)
        if iso is not None:
            timestamp_text = iso[0].decode("ascii")
            try:
                timestamp = _iso_datetime(iso[0], 0)
            except _Malformed:
                timestamp = None
            position = iso.end()
    if timestamp_text is not None:
        if frame.startswith(b":", position):
            position += 1
        if position < size:  # the lookahead guarantees this byte is the SP
            position += 1

    hostname: str | None = None
    end = _token_end(frame, position)
    tag = _split_tag(frame[position:end])
    if tag is None and timestamp_text is not None:
        host = frame[position:end]
        # A token too long for a HOSTNAME, or a TAG too long to be one, starts the MSG.
        if (
            0 < len(host) <= HOSTNAME_MAX
            and not host.translate(None, _PRINTABLE)
            and not (host[-1] == 58 and len(host) > 1)
        ):
            hostname = host.decode("ascii")
            position = min(end + 1, size)
            end = _token_end(frame, position)
            tag = _split_tag(frame[position:end])
    app_name: str | None = None
    procid: str | None = None
    if tag is not None:
        app_name, procid = tag
        position = min(end + 1, size)
    return _message(
        SyslogFormat.RFC3164,
        None if pri is None else pri >> 3,
        None if pri is None else pri & 7,
        timestamp,
        timestamp_text,
        hostname,
        app_name,
        procid,
        None,
        None,
        position,
    )


def _token_end(frame: bytes, position: int) -> int:
    end = frame.find(b" ", position)
    return len(frame) if end < 0 else end


def _split_tag(token: bytes) -> tuple[str, str | None] | None:
    """``app:`` -> (app, None), ``app[42]:`` -> (app, "42"); None if the token is no TAG, or
    its name or PROCID is too long to store."""
    if len(token) < 2 or token[-1] != 58 or token.translate(None, _PRINTABLE):
        return None
    body = token[:-1]
    if body[-1] == 93:  # "]"
        bracket = body.rfind(b"[")
        if 0 < bracket < len(body) - 2:
            if bracket > APP_NAME_MAX or len(body) - bracket - 2 > PROCID_MAX:
                return None
            return body[:bracket].decode("ascii"), body[bracket + 1 : -1].decode("ascii")
    if len(body) > APP_NAME_MAX:
        return None
    return body.decode("ascii"), None


def _bsd_datetime(
    match: re.Match[bytes], received_at: datetime | None, default_tz: tzinfo
) -> datetime | None:
    """The UTC datetime of a BSD timestamp, or None if it names an impossible time."""
    month = _MONTHS[match[1]]
    day = int(match[2])
    hour, minute, second = int(match[4]), int(match[5]), int(match[6])
    fraction = match[7]
    microsecond = int(fraction.ljust(6, b"0")) if fraction else 0
    zone = UTC if match[8] else default_tz
    if second == 60:  # leap second, as in RFC 5424
        second = 59
    try:
        if match[3]:
            local = datetime(
                int(match[3]), month, day, hour, minute, second, microsecond, tzinfo=zone
            )
        else:
            reference = received_at if received_at is not None else datetime.now(UTC)
            if reference.tzinfo is None:
                reference = reference.replace(tzinfo=UTC)
            closest = None
            closest_distance = _HALF_YEAR
            # The reference year comes first: within half a year of the reference, no other
            # year can be closer, which spares building the other two candidates.
            for year in (reference.year, reference.year - 1, reference.year + 1):
                try:
                    candidate = datetime(
                        year, month, day, hour, minute, second, microsecond, tzinfo=zone
                    )
                except ValueError:  # Feb 29 outside leap years, year 0 or 10000
                    continue
                distance = abs(candidate - reference)
                if distance <= _HALF_YEAR:
                    closest = candidate
                    break
                if closest is None or distance < closest_distance:
                    closest, closest_distance = candidate, distance
            if closest is None:
                return None
            local = closest
        return local if zone is UTC else local.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


# --- PRI-less ISO (Pexip unified log) --------------------------------------------------------


def _iso_line(frame: bytes, parts: list[bytes]) -> SyslogMessage:
    """Parse ``ISO-time SP host SP msg``; ``parts`` is ``frame.split(b" ", 6)``."""
    if len(parts) > 1:
        ts, host = parts[0], parts[1]
        if (
            ts.translate(_SHAPE) in _ISO_SHAPES
            and (ts[-1] == 90 or ts[-2] <= 53)
            and 0 < len(host) <= HOSTNAME_MAX
            and not host.translate(None, _PRINTABLE)
        ):
            text = ts.decode()
            try:
                timestamp = datetime.fromisoformat(text)
                if timestamp.tzinfo is not UTC:
                    timestamp = timestamp.astimezone(UTC)
            except (ValueError, OverflowError):
                pass  # leap second or impossible date: the precise parser decides
            else:
                offset = len(ts) + len(host) + 2 if len(parts) > 2 else len(frame)
                return _message(
                    SyslogFormat.ISO,
                    None,
                    None,
                    timestamp,
                    text,
                    host.decode(),
                    None,
                    None,
                    None,
                    None,
                    offset,
                )
    try:
        return _iso_line_precise(frame)
    except _Malformed as exc:
        if _MISSING_LT.match(frame):
            return _raw("rfc5424: missing '<' at column 0: the frame starts with 'PRI>'")
        return _raw(f"iso: {exc}")


def _iso_line_precise(frame: bytes) -> SyslogMessage:
    size = len(frame)
    space = frame.find(b" ")
    if space < 0:
        space = size
    text = frame[:space].decode("latin-1")
    timestamp = _iso_datetime(frame[:space], 0)
    if space >= size:
        raise _Malformed("missing HOSTNAME", size, "the line ends after the timestamp")
    host, end = _header_field(frame, space + 1, "HOSTNAME", HOSTNAME_MAX)
    offset = min(end + 1, size)
    return _message(
        SyslogFormat.ISO,
        None,
        None,
        timestamp,
        text,
        host.decode("ascii"),
        None,
        None,
        None,
        None,
        offset,
    )


def _iso_datetime(token: bytes, column: int) -> datetime:
    """UTC datetime of an RFC 3339 token with up to 9 fraction digits; raises _Malformed."""
    if token.translate(_SHAPE) in _ISO_SHAPES and (token[-1] == 90 or token[-2] <= 53):
        try:
            parsed = datetime.fromisoformat(token.decode())
            return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            pass  # let the precise parser name the fault (or accept a leap second)
    return _rfc3339(token.decode("latin-1"), column, 9)


# --- helpers ---------------------------------------------------------------------------------


def _with_pri(frame: bytes, received_at: datetime | None, default_tz: tzinfo) -> SyslogMessage:
    """Dispatch a ``<``-frame that is not ``<PRI>1 ``: a broken RFC 5424 frame or RFC 3164."""
    gt = frame.find(b">", 1, 5)
    pri = _PRI.get(frame[1:gt]) if gt > 1 else None
    if pri is None:
        return _raw(_pri_error(frame))
    if _looks_like_version(frame, gt + 1):
        return _rfc5424(frame, pri, gt + 1)
    return _rfc3164(frame, gt + 1, pri, received_at, default_tz)


def _storable(text: str) -> str:
    """``text`` with each NUL replaced (parsers/limits.py): PostgreSQL text cannot hold one."""
    return text.replace("\x00", NUL_REPLACEMENT) if "\x00" in text else text


def _raw(error: str) -> SyslogMessage:
    return SyslogMessage(SyslogFormat.RAW, error=error)


def _digits_end(frame: bytes, position: int) -> int:
    """End of the run of ASCII digits at ``position``, looking at no more than 12 of them."""
    stop = min(len(frame), position + 12)
    while position < stop and 48 <= frame[position] <= 57:
        position += 1
    return position


def _looks_like_version(frame: bytes, position: int) -> bool:
    """True if ``frame[position:]`` starts like an RFC 5424 VERSION, even a broken one."""
    end = _digits_end(frame, position)
    if end == position:
        return False
    follower = frame[end : end + 1]
    return follower in (b"", b" ") or (follower == b"-" and end - position <= 3)


def _pri_error(frame: bytes) -> str:
    """Explain why the ``<PRI>`` at the start of ``frame`` is invalid."""
    end = _digits_end(frame, 1)
    digits = frame[1:end]
    gt = frame.find(b">", 1, 16)
    label = "rfc5424" if gt > 0 and _looks_like_version(frame, gt + 1) else "rfc3164"
    if not digits:
        detail = f"expected a digit, got {_show_at(frame, 1)}"
        column = 1
    elif len(digits) > 3:
        detail = "more than 3 digits"
        column = 1
    elif end >= len(frame) or frame[end] != 62:
        detail = f"expected a digit or '>', got {_show_at(frame, end)}"
        column = end
    elif digits[0] == 48:
        detail = f"leading zero in {digits.decode()}"
        column = 1
    else:
        detail = f"{digits.decode()} is out of range 0-191"
        column = 1
    return f"{label}: bad PRI at column {column}: {detail}"


def _show_at(frame: bytes, position: int) -> str:
    if position >= len(frame):
        return "the end of the frame"
    return _show(frame[position : position + 1])


def _show(chunk: bytes) -> str:
    return repr(chunk.decode("latin-1")) if chunk else "nothing"
