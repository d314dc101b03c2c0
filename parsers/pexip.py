r"""Parse the body of a Pexip Infinity administrator/support log line into a `PexipEvent`.

The body is what follows the syslog header::

    2017-07-09 13:45:29,919 Level="INFO" Name="support.externalpolicy" Message="..." Key="value"

Sans-IO: text in, a frozen `PexipEvent` out, `PexipParseError` (column and expectation) on bad
input. The grammar, from Pexip's own log tools (pexip-log-tools `logreader.py` `tokenize()`,
quoted in docs/pexip-format.md section 3) and the sample lines we have:

    body      = timestamp ws+ pair (ws+ pair)* ws*
    timestamp = YYYY-MM-DD hh:mm:ss,mmm            (UTC, as Pexip logs it; a real calendar time)
    pair      = key '="' value '"'
    key       = [A-Za-z0-9_.-]+                    (compared case-insensitively: lower-cased)

A value runs to its *closing quote*: the first '"' that is not preceded by a backslash and is
followed by the end of the line, or by whitespace and the next `key="`. pexip-log-tools ends a
value at any unescaped '"' followed by whitespace; also requiring the next `key="` is what keeps
these real values whole: SIP messages flattened with `^M` (`From: "Alice" <sip:...>`, the reason
pexip-log-tools special-cases values that start with `^M`) and display names with quotes in
them. Where pexip-log-tools would cut such a value, it would also make a junk key of the rest.
So:

- Unescaped quotes inside a value survive (`Content="{"protocol": "MSSIP", ...}"`), as long as
  no quote inside it is followed by whitespace and something shaped like `key="`. A value that
  contains `" key="` *is* cut there: the rest becomes the next pair (documented limitation;
  the format cannot tell them apart).
- Escapes: `\"` is unescaped to `"`. No other backslash sequence is special (`\\` stays two
  backslashes), exactly as pexip-log-tools does it. Hence a value cannot end with a backslash (its
  closing quote would read as escaped), and a literal backslash-quote in the original text comes
  back as a bare quote.
- The two characters `^M` (Pexip's stand-in for CR in flattened multi-line text) are kept as
  they are, also at the start of a value; `split_cr` splits a value on them.
- Empty values (`Key=""`) are kept as "". Values may hold any other text, including non-ASCII.
- Duplicate keys (after lower-casing): the first occurrence wins and later ones are ignored,
  so that text later in a line (say, a value cut by the limitation above) cannot override what
  the line began with. (pexip-log-tools keeps the last.)
- Leading whitespace is an error (the body starts at the timestamp: use `find_pexip_body`);
  trailing whitespace, CR and LF are ignored.

What the store cannot hold (parsers/limits.py): a NUL becomes U+FFFD, and a `Level`, `Name` or
`Participant-id` value longer than its column is dropped with its key, and the event is marked
`truncated`, as for a pair cut short: a Participant-id cut to fit could name another leg.

Truncation: syslog senders cut long lines, often mid-value. `parse_pexip(body)` then raises a
`PexipParseError` with `truncated=True` at the column where the line ends. `parse_pexip(body,
partial=True)` instead returns the pairs completed before the cut, with `event.truncated` set,
and drops the pair that was cut (a value cut short, say a UUID, must not be mistaken for a whole
one). A cut that falls just after a closing-quote-looking quote cannot be detected.

Two implementations of the one grammar. The pyparsing grammar (`_grammar`) reads as the spec and
says precisely what is wrong with a bad line. Two scanners do the work on the ingest hot path:
`_scan_simple` takes the usual line (no quote inside a value, no backslash, single spaces) in a
few C-level calls, and `_scan_general` takes every other line with a few regular expressions.
Between them they accept exactly the lines the grammar accepts and return the same events (the
tests prove it with hypothesis), so the grammar only runs to explain a line that is wrong, and
for a truncated line only on the pair that was cut.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache, partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import pyparsing as pp

from parsers.limits import LEVEL_MAX, NAME_MAX, NUL_REPLACEMENT, PARTICIPANT_ID_MAX

__all__ = [
    "CR_MARKER",
    "PARTICIPANT_ATTEMPTING",
    "PARTICIPANT_DISCONNECTED",
    "PARTICIPANT_JOINED",
    "PexipEvent",
    "PexipParseError",
    "find_pexip_body",
    "is_pexip_body",
    "parse_pexip",
    "split_cr",
]

# Message= texts of the administrator.conference lines a CDR is built from (trailing dot included).
PARTICIPANT_ATTEMPTING: Final = "Participant attempting to join conference."
PARTICIPANT_JOINED: Final = "Participant has joined."
PARTICIPANT_DISCONNECTED: Final = "Participant has disconnected."

# Pexip's stand-in for CR inside a value: the two characters '^' and 'M'.
CR_MARKER: Final = "^M"


@dataclass(frozen=True, slots=True)
class PexipEvent:
    """One parsed Pexip log body."""

    time: datetime
    """The originating time in the body (UTC-aware, millisecond precision)."""
    level: str | None
    """`Level=` (DEBUG, INFO, WARNING, ERROR), None when absent."""
    name: str | None
    """`Name=` (e.g. administrator.conference), None when absent."""
    message: str | None
    """`Message=` (e.g. PARTICIPANT_JOINED), None when absent."""
    fields: Mapping[str, str] = field(hash=False)
    """Every key="value" pair, Level/Name/Message included: keys lower-cased, values unescaped,
    in order of appearance, the first of duplicate keys kept. Read-only."""
    truncated: bool = False
    """The line was cut short (only from `parse_pexip(..., partial=True)`): `fields` holds the
    pairs completed before the cut. Also set when a value too long to store was dropped."""

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of `key`, looked up case-insensitively (`Call-Id` finds `call-id`)."""
        return self.fields.get(key.lower(), default)


class PexipParseError(ValueError):
    """A body that does not follow the grammar; says where (1-based column) and what was due."""

    def __init__(self, column: int, expected: str, *, truncated: bool = False) -> None:
        super().__init__(f"column {column}: expected {expected}")
        self.column = column
        """1-based column in the body where parsing went wrong."""
        self.expected = expected
        """What the grammar expected there."""
        self.truncated = truncated
        """The body ended before it was complete (the error is at the end of the line)."""

    def __reduce__(self) -> tuple[type[PexipParseError], tuple[int, str], dict[str, bool]]:
        # Keeps the error picklable (BaseException would re-create it from the message alone).
        return (type(self), (self.column, self.expected), {"truncated": self.truncated})


def split_cr(value: str) -> list[str]:
    """Split a value on Pexip's literal two-character CR marker `^M` (SIP/SDP text, Detail).

    Exactly `value.split("^M")`: nothing is dropped, so a value starting with `^M` gives a
    leading "", and `"^M".join(split_cr(v)) == v`.
    """
    return value.split(CR_MARKER)


def parse_pexip(body: str, *, partial: bool = False) -> PexipEvent:
    """Parse a Pexip log body (see the module docstring for the grammar).

    Raises PexipParseError when the body does not follow the grammar. With `partial=True`, a
    body cut short after at least one complete pair returns those pairs instead, with
    `truncated=True`; any other error still raises.
    """
    if "\x00" in body:
        body = body.replace("\x00", NUL_REPLACEMENT)
    event = _scan_simple(body)
    if event is not None:
        return _storable(event)
    scanned = _scan_general(body)
    if scanned is None:
        return _storable(_parse_grammar(body, partial))
    event, cut = scanned
    if cut is not None and not partial:
        # Truncated: only the pair that was cut needs the grammar to say what went wrong.
        raise _explain_cut(body, cut)
    return _storable(event)


# The keys whose values the store keeps in bounded columns, and their limits.
_STORED_LIMITS: Final = {"level": LEVEL_MAX, "name": NAME_MAX, "participant-id": PARTICIPANT_ID_MAX}


def _storable(event: PexipEvent) -> PexipEvent:
    """`event`, or without the pairs too long to store and with `truncated` set."""
    if (
        len(event.level or "") <= LEVEL_MAX
        and len(event.name or "") <= NAME_MAX
        and len(event.fields.get("participant-id") or "") <= PARTICIPANT_ID_MAX
    ):
        return event
    kept = {
        key: value
        for key, value in event.fields.items()
        if len(value) <= _STORED_LIMITS.get(key, len(value))
    }
    return PexipEvent(
        event.time,
        kept.get("level"),
        kept.get("name"),
        kept.get("message"),
        MappingProxyType(kept),
        truncated=True,
    )


def find_pexip_body(message: str) -> int:
    """Index where a Pexip body starts inside a syslog MSG, or -1 if there is none.

    The MSG may carry a prefix (a host name, or the unified log's `ISO-time host`), so the body
    is found by its shape, not an offset: the first `YYYY-MM-DD hh:mm:ss,mmm` (not preceded by
    a digit) followed by whitespace and a `key="`.
    """
    match = _BODY_ANCHOR.search(message)
    return -1 if match is None else match.start()


def is_pexip_body(message: str) -> bool:
    """True when `message` carries a Pexip body, that is when `find_pexip_body` finds one."""
    return _BODY_ANCHOR.search(message) is not None


# --------------------------------------------------------------------------------------------
# The grammar (pyparsing): the reference, and what explains a bad line.
# --------------------------------------------------------------------------------------------

_KEY = r"[A-Za-z0-9_.\-]+"
_TIMESTAMP = r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2},[0-9]{3}"
# The closing quote of a value; the third alternative only matters on a truncated line, where
# it ends the last whole value before a key that was cut short (`... A="x" Ke`).
_CLOSING_QUOTE = rf'(?<!\\)"(?=\s*\Z|\s+{_KEY}="|\s+{_KEY}=?\s*\Z)'

_VALUE_NAME = "closing '\"'"
_OPEN_NAME = "'=\"'"


def _calendar_time(text: str, loc: int, tokens: pp.ParseResults) -> datetime:
    year, month, day, hour, minute, second, millis = (int(token) for token in tokens)
    last_day = calendar.monthrange(year, month)[1]
    if day > last_day:
        # Every other part was range-checked by the grammar; only the day can still be wrong.
        day_loc = loc + len("YYYY-MM-")
        import pyparsing as pp

        raise pp.ParseFatalException(text, day_loc, f"day 01-{last_day} for {year:04d}-{month:02d}")
    return datetime(year, month, day, hour, minute, second, millis * 1000, tzinfo=UTC)


def _lower(tokens: pp.ParseResults) -> str:
    return str(tokens[0]).lower()


def _unescape(tokens: pp.ParseResults) -> str:
    return str(tokens[0]).replace('\\"', '"')


def _pair(tokens: pp.ParseResults) -> tuple[str, str]:
    return (str(tokens[0]), str(tokens[1]))


# Built on first use: only a line the scanners refuse needs it, and pyparsing and the grammar
# would otherwise cost every process that imports this module (every cdrecon command).
@cache
def _grammar() -> tuple[pp.ParserElement, pp.ParserElement]:
    """The grammar of a whole body, and of the pair a truncated line was cut in."""
    import pyparsing as pp

    def part(pattern: str, what: str) -> pp.ParserElement:
        return pp.Regex(pattern).set_name(what)

    def sep(text: str) -> pp.ParserElement:
        return pp.Suppress(pp.Literal(text))

    timestamp = (
        part("(?!0000)[0-9]{4}", "year 0001-9999")
        - sep("-")
        - part("0[1-9]|1[0-2]", "month 01-12")
        - sep("-")
        - part("0[1-9]|[12][0-9]|3[01]", "day 01-31")
        - sep(" ")
        - part("[01][0-9]|2[0-3]", "hour 00-23")
        - sep(":")
        - part("[0-5][0-9]", "minute 00-59")
        - sep(":")
        - part("[0-5][0-9]", "second 00-59")
        - sep(",")
        - part("[0-9]{3}", "3-digit milliseconds")
    ).set_parse_action(_calendar_time)
    ws = pp.Suppress(part(r"\s+", "whitespace"))
    key = part(_KEY, "a key (letters, digits, '-', '_' or '.')").set_parse_action(_lower)
    value = part(rf"(?s).*?(?={_CLOSING_QUOTE})", _VALUE_NAME).set_parse_action(_unescape)
    # '-' (not '+') after the key: once a key has started, any failure is this pair's fault,
    # and the error must say so rather than backtrack to a vaguer "expected end of text".
    pair = (key - sep('="').set_name(_OPEN_NAME) - value - sep('"')).set_parse_action(_pair)
    end = pp.Optional(ws) - pp.StringEnd()
    body = timestamp - ws - pair - pp.ZeroOrMore(ws + pair) - end
    # The pair a truncated line was cut in, from its key to the end of the line.
    cut_pair = pair - end
    # Whitespace is part of the grammar (and tabs must stay tabs, columns must stay columns).
    return body.leave_whitespace().parse_with_tabs(), cut_pair.leave_whitespace().parse_with_tabs()


_KEY_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_TIME_SHAPE: Final = re.compile(_TIMESTAMP)


def _parse_grammar(body: str, partial: bool) -> PexipEvent:
    """Parse with the pyparsing grammar: the reference the scanners must agree with."""
    import pyparsing as pp

    try:
        tokens = _grammar()[0].parse_string(body)
    except pp.ParseBaseException as exc:
        error, pair_start = _diagnose(body, exc.loc, exc.msg)
        if partial and error.truncated and pair_start is not None:
            # Re-parse what came before the pair that was cut: it raises (and so do we) when
            # no whole pair precedes it.
            try:
                return replace(_parse_grammar(body[:pair_start], False), truncated=True)
            except PexipParseError:
                pass
        raise error from None
    time: datetime = tokens[0]
    pairs: list[tuple[str, str]] = list(tokens[1:])
    return _build_event([key for key, _ in pairs], time, [value for _, value in pairs])


def _explain_cut(body: str, cut: int) -> PexipParseError:
    """The error for a body truncated in the pair starting at `cut` (the grammar's own error,
    found without re-parsing the whole pairs before it)."""
    import pyparsing as pp

    try:
        _grammar()[1].parse_string(body[cut:])
    except pp.ParseBaseException as exc:
        return _diagnose(body, cut + exc.loc, exc.msg)[0]
    raise AssertionError(f"not truncated at {cut}: {body!r}")  # pragma: no cover


def _diagnose(body: str, loc: int, message: str) -> tuple[PexipParseError, int | None]:
    """Turn a pyparsing error at `loc` into a PexipParseError, plus where the failing pair
    starts (None unless the failure is inside a pair: after its key, or in its value)."""
    end = len(body.rstrip())
    expected = message.removeprefix("Expected ")
    rest = body[loc:end]
    pair_start: int | None = None
    if expected in (_VALUE_NAME, _OPEN_NAME):
        key_end = loc - 2 if expected == _VALUE_NAME else loc
        pair_start = key_end
        while pair_start > 0 and body[pair_start - 1] in _KEY_CHARS:
            pair_start -= 1
        key = body[pair_start:key_end]
        if expected == _VALUE_NAME:
            # The value never closed: the line ends inside it.
            loc = end
            expected = f"'\"' closing the value of key '{key}'"
        else:
            expected = f"{_OPEN_NAME} after key '{key}'"
    elif expected == "end of text":
        expected = "end of line"
    truncated = loc >= end or (pair_start is not None and rest == "=") or _cut_in_time(body, end)
    return PexipParseError(min(loc, end) + 1, expected, truncated=truncated), pair_start


def _cut_in_time(body: str, end: int) -> bool:
    """The body ends inside a timestamp that could still be completed into a valid one."""
    if end >= _TIME_LEN:
        return False
    # Completing each missing digit with 0 or with 1 finds a valid time whenever one exists.
    for filler in ("0000-00-00 00:00:00,000", "1111-11-11 11:11:11,111"):
        padded = body[:end] + filler[end:]
        if _TIME_SHAPE.fullmatch(padded) is not None:
            try:
                datetime.fromisoformat(padded)
            except ValueError:
                continue
            return True
    return False


# --------------------------------------------------------------------------------------------
# The scanners: the same grammar, fast.
# --------------------------------------------------------------------------------------------

# Simple lines have no backslash, no quote inside a value and single spaces between pairs.
# Split on '"', such a line alternates between the text outside the quotes and the values:
#     ['2017-07-09 13:45:29,919 Level=', 'INFO', ' Name=', 'support.dns', ..., '']
# and the text outside the quotes after the timestamp, joined by '"' (which marks where each
# piece ends, as no piece holds one), is the line's *shape*: ' Level=" Name=" ...='.
# A node logs few distinct shapes, so each is checked once and gets its own event builder.
_SHAPE: Final = re.compile(rf' {_KEY}=(?:" {_KEY}=)*')
_Builder = Callable[[datetime, list[str]], PexipEvent]
# shape -> builder; bounded whatever the senders log (a builder is a few KiB).
_builders: dict[str, _Builder] = {}
# Shapes seen once, not given a builder yet.
_seen: set[str] = set()
_SHAPES_MAX: Final = 1024
_SHAPE_MAX_LEN: Final = 2048
# Any other line: the first key, then every closing quote that is followed by another key.
_HEAD: Final = re.compile(rf'{_TIMESTAMP}\s+({_KEY})="')
# (The look-behind comes after the quote, so that the regex engine can scan for the quote.)
_NEXT_KEY: Final = re.compile(rf'"(?<!\\")\s+({_KEY})="')
# In the last chunk of a truncated line: the closing quote before a key that was cut short.
_CUT_KEY: Final = re.compile(rf'"(?<!\\")\s+({_KEY}=?\s*)\Z')
_BODY_ANCHOR: Final = re.compile(rf'(?<![0-9]){_TIMESTAMP}\s+{_KEY}="')
_TIME_LEN: Final = 23  # len("2017-07-09 13:45:29,919")
# The separators of a timestamp, at 4, 7, ..., 19: `time[4:20:3]` in one slice.
_TIME_SEPARATORS: Final = "-- ::,"

# A frozen dataclass's __init__ sets each attribute through object.__setattr__ in Python; on
# the hot path the events are built with the slots' own setters instead, which are C.
# (PexipEvent.__new__ is object.__new__ in pure Python; compiled by mypyc, PexipEvent is a
# native class and only its own __new__ may allocate one.)
_new = PexipEvent.__new__


def _slot_setter(name: str) -> Callable[[PexipEvent, object], None]:
    setter: Callable[[PexipEvent, object], None] = vars(PexipEvent)[name].__set__
    return setter


_set_time = _slot_setter("time")
_set_level = _slot_setter("level")
_set_name = _slot_setter("name")
_set_message = _slot_setter("message")
_set_fields = _slot_setter("fields")
_set_truncated = _slot_setter("truncated")


def _scan_simple(body: str) -> PexipEvent | None:
    """Scan a simple line (see `_SHAPE`) in a few C calls; None for any other line."""
    if "\\" in body:
        return None
    parts = body.split('"')
    if not len(parts) & 1:
        # An odd number of quotes: a value was left open (or holds a quote).
        return None
    stamp = parts[0]
    parts[0] = stamp[_TIME_LEN:]
    shape = '"'.join(parts[0:-1:2])
    build = _builders.get(shape) or _learn_shape(shape)
    tail = parts[-1]
    # Each value is quote-free and sits between ` key="` and a quote followed by ` key="` or by
    # the end: its closing quote is the next quote, as the grammar says.
    if build is None or (tail and not tail.isspace()) or stamp[4:20:3] != _TIME_SEPARATORS:
        return None
    try:
        # With the separators in place, fromisoformat() insists on ASCII digits everywhere and
        # checks the calendar, as the grammar does (tested against the grammar, digit by digit).
        time = datetime.fromisoformat(stamp[:_TIME_LEN] + "+00:00")
    except ValueError:
        return None
    return build(time, parts[1::2])


def _learn_shape(shape: str) -> _Builder | None:
    """The builder for a shape not in the cache; None if `shape` is not one (` key=" key=" ...
    key=`), or is too long to be worth a builder."""
    if len(shape) > _SHAPE_MAX_LEN or _SHAPE.fullmatch(shape) is None:
        return None
    keys = shape[1:-1].lower().split('=" ')
    if shape not in _seen:
        # Compiling a builder costs far more than parsing a line: a shape seen only once
        # (as every line of a hostile sender could be) gets the generic one.
        if len(_seen) >= _SHAPES_MAX:
            _seen.clear()
        _seen.add(shape)
        return partial(_build_event, keys)
    _seen.discard(shape)
    build = _compile_builder(keys)
    if len(_builders) >= _SHAPES_MAX:
        # A busy node's usual shapes are back within a few lines.
        _builders.clear()
    _builders[shape] = build
    return build


def _compile_builder(keys: list[str]) -> _Builder:
    """`_build_event` for one shape, written out (as collections.namedtuple and dataclasses
    write code) and compiled.

    The fields dict becomes a display with constant keys, built in one step at its final size,
    and Level/Name/Message are picked by position. Plain Python has no such step (a dict from
    the pairs goes through zip and grows as it fills): `python -m bench.pexip_builders` compares
    the two in one run, and bench/README.md ("Pexip parsing") has the figures that keep this.
    The keys were checked against `_KEY`, and repr() writes them as string literals.
    """
    names = [f"v{i}" for i in range(len(keys))]
    first: dict[str, str] = {}
    for key, name in zip(keys, names, strict=True):
        first.setdefault(key, name)  # duplicate keys: the first wins
    fields = ", ".join(f"{key!r}: {name}" for key, name in first.items())
    source = "\n".join(
        [
            "def build(time, values):",
            f"    {', '.join(names)}, = values",
            "    event = new(PexipEvent)",
            "    set_time(event, time)",
            f"    set_level(event, {first.get('level')})",
            f"    set_name(event, {first.get('name')})",
            f"    set_message(event, {first.get('message')})",
            f"    set_fields(event, MappingProxyType({{{fields}}}))",
            "    set_truncated(event, False)",
            "    return event",
        ]
    )
    namespace: dict[str, object] = {
        "new": _new,
        "PexipEvent": PexipEvent,
        "MappingProxyType": MappingProxyType,
        "set_time": _set_time,
        "set_level": _set_level,
        "set_name": _set_name,
        "set_message": _set_message,
        "set_fields": _set_fields,
        "set_truncated": _set_truncated,
    }
    exec(source, namespace)
    build: _Builder = namespace["build"]  # type: ignore[assignment]
    return build


def _scan_general(body: str) -> tuple[PexipEvent, int | None] | None:
    """Scan a line with quotes or escapes inside values, odd whitespace, or a truncated end.

    Returns the event and, for a truncated line, where the pair that was cut starts (the event
    then holds the pairs before it); None when the scanner cannot tell (the grammar can).
    """
    head = _HEAD.match(body)
    if head is None:
        return None
    try:
        time = datetime.fromisoformat(body[:_TIME_LEN] + "+00:00")
    except ValueError:
        return None
    # Split after the first `key="`, so that its opening quote is never taken for a closing one.
    parts = _NEXT_KEY.split(body[head.end() :])
    keys = [head.group(1), *parts[1::2]]
    values = parts[0::2]
    # Every value but the last ended at a closing quote followed by the next key; the last one
    # must end at a closing quote followed by nothing but whitespace.
    last = values[-1]
    stripped = last.rstrip()
    cut: int | None = None
    if stripped.endswith('"') and not stripped.endswith('\\"'):
        values[-1] = stripped[:-1]
    else:
        # Truncated. The last chunk of the line is all of the last value and what follows.
        cut_key = _CUT_KEY.search(last)
        if cut_key is not None:
            # Cut inside the key after the last value: that value is whole.
            values[-1] = last[: cut_key.start()]
            cut = len(body) - len(last) + cut_key.start(1)
        else:
            # Cut inside the last value: drop the pair.
            cut = len(body) - len(last) - len(keys[-1]) - len('="')
            del keys[-1], values[-1]
            if not keys:
                return None
    if "\\" in body:
        values = [value.replace('\\"', '"') for value in values]
    keys = [key.lower() for key in keys]
    return _build_event(keys, time, values, truncated=cut is not None), cut


def _build_event(
    keys: list[str], time: datetime, values: list[str], truncated: bool = False
) -> PexipEvent:
    """The event of a scanned line, from its lower-cased keys and unescaped values."""
    fields: dict[str, str] = {}
    for key, value in zip(keys, values, strict=True):
        fields.setdefault(key, value)  # duplicate keys: the first wins
    return PexipEvent(
        time,
        fields.get("level"),
        fields.get("name"),
        fields.get("message"),
        MappingProxyType(fields),
        truncated,
    )
