"""Type Management Node participant and conference history records, one dict at a time.

The dicts come from parsers/history_documents.py (JSON or CSV documents) or straight from the
API. `parse_participant` and `parse_conference` type one each, field by field as
parsers/mn_record.py declares them, and raise `HistoryRecordError` listing every bad field.
`iter_document` (a document in chunks, as it is read) and `parse_document` (a whole one) type
each record, keeping going past bad records, so the caller sees every problem of a document at
once and decides whether to reject it.

Sans-IO: dicts in, frozen dataclasses out. Policies (one rule per kind of value, the same for
JSON and CSV, so that one record parses to the same typed fields whichever way it arrived):

- Times are UTC (the MN writes them without a zone). See `parse_history_time`.
- Integers may arrive as numbers or numeric strings. A fraction is floored, as the MN itself
  floors durations ("1178.97" gives 1178); anything else that is not a plain decimal number, and
  negative values, are errors.
- Booleans may be ``true``/``false``, the strings ``"True"``/``"true"``/``"TRUE"`` (and false
  alike), or ``1``/``0``; anything else is an error.
- Text fields: ``""`` and the string ``"None"`` (Python's ``str(None)``, which the MN itself writes
  for ``proxy_node``) mean "no value" and become None. A CSV export cannot tell an empty or null
  field from ``""``/``"None"``, so JSON gets the same rule.
- Unknown fields, lists (``media_streams``, ``participants``, call-quality series) and fields
  outside the typed ones are kept, as received, in ``raw`` and nowhere else.
"""

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from types import MappingProxyType
from typing import Any, Final, Literal

from parsers.history_documents import Chunks, iter_items, show, type_name
from parsers.mn_record import (
    CONFERENCE_FIELDS,
    CONFERENCE_ONLY,
    INT_MAX,
    PARTICIPANT_FIELDS,
    PARTICIPANT_ONLY,
    Kind,
    MNConference,
    MNField,
    MNParticipant,
)

__all__ = [
    "DocumentRecord",
    "HistoryRecordError",
    "ParsedDocument",
    "RecordError",
    "iter_document",
    "parse_conference",
    "parse_document",
    "parse_history_time",
    "parse_participant",
    "record_kind",
]


# --- errors ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordError:
    """One problem with one record of a document."""

    row: int
    """1-based number of the record in its document (0: parsed on its own, not from a document)."""
    record_id: str | None
    """The record's ``id``, if it has a usable one."""
    field: str | None
    """The field at fault; None when it is the record as a whole (e.g. a CSV row too short)."""
    reason: str
    line: int | None = None
    """1-based line of the document where the record starts, where known (CSV rows, JSON lines)."""

    def __str__(self) -> str:
        where = f"record {self.row}" if self.row else "record"
        if self.line is not None:
            where += f" (line {self.line})"
        if self.record_id is not None:
            where += f" id {self.record_id}"
        if self.field is not None:
            where += f", field {self.field}"
        return f"{where}: {self.reason}"


class HistoryRecordError(ValueError):
    """A record that cannot be typed; ``errors`` lists every bad field, ``error`` is the first."""

    def __init__(self, errors: Sequence[RecordError]) -> None:
        if not errors:
            raise ValueError("HistoryRecordError needs at least one RecordError")
        super().__init__("; ".join(str(error) for error in errors))
        self.errors: tuple[RecordError, ...] = tuple(errors)

    @property
    def error(self) -> RecordError:
        """The first problem found."""
        return self.errors[0]

    def __reduce__(
        self,
    ) -> tuple[type["HistoryRecordError"], tuple[tuple[RecordError, ...]]]:
        return (type(self), (self.errors,))


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """The records of one document that parsed, and the problems of those that did not."""

    participants: list[MNParticipant]
    conferences: list[MNConference]
    errors: list[RecordError]


_RESOURCE_PATH: Final = re.compile(r"/history/v1/([^?#]*)", re.ASCII)
_CONFERENCE_URI: Final = re.compile(r"/conference/([^/\s]+)/?", re.ASCII)


# --- times -----------------------------------------------------------------------------------

_TIME: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?",
    re.ASCII,
)
_NULL_TEXT: Final = frozenset({"", "none", "null"})


def parse_history_time(value: object) -> datetime | None:
    """A history time as a UTC-aware datetime; None for None, "", "None" and "null".

    Accepts what the MN writes, ``2020-12-21T08:59:29.878137`` (UTC, no zone), and its variants:
    whole seconds; 1 to 9 fraction digits (beyond microseconds they are cut off, never rounded
    up); a space instead of ``T``; a ``Z`` or a numeric offset (``+00:00``, ``+0000``, or any
    other, converted to UTC); surrounding whitespace. A datetime is taken as it is (a naive one
    as UTC). Raises ValueError on anything else, including impossible calendar times.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not isinstance(value, str):
        raise ValueError(f"expected a time as text, got {type_name(value)} {show(value)}")
    text = value.strip()
    if text.lower() in _NULL_TEXT:
        return None
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(
            f"not a history time: {show(value)} (expected e.g. '2020-12-21T08:59:29.878137')"
        )
    year, month, day, hour, minute, second, fraction, _zulu, sign, off_h, off_m = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "").ljust(6, "0")[:6]),
            tzinfo=UTC,
        )
        if sign is not None:
            if int(off_h) > 23 or int(off_m) > 59:
                raise ValueError(f"UTC offset {sign}{off_h}:{off_m} out of range")
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            moment = moment - offset if sign == "+" else moment + offset
    except (ValueError, OverflowError) as error:
        raise ValueError(f"not a calendar time: {show(value)} ({error})") from None
    return moment


# --- typing one record -----------------------------------------------------------------------

_DECIMAL: Final = re.compile(r"[+-]?\d+(?:\.\d*)?", re.ASCII)
_TRUE: Final = frozenset({"true", "1"})
# The id column of both record tables.
ID_MAX: Final = next(f.spec.length for f in PARTICIPANT_FIELDS if f.name == "id") or 128
_FALSE: Final = frozenset({"false", "0"})


class _Fields:
    """Reads typed fields of one record, collecting every problem instead of stopping at one."""

    __slots__ = ("errors", "record", "record_id")

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record
        record_id = record.get("id")
        usable = (
            isinstance(record_id, str)
            and record_id.strip() not in ("", "None")
            and _fits(record_id, ID_MAX) is None
        )
        self.record_id = record_id if usable else None
        self.errors: list[RecordError] = []

    def fail(self, name: str | None, reason: str) -> None:
        self.errors.append(RecordError(0, self.record_id, name, reason))

    def check(self) -> None:
        if self.errors:
            raise HistoryRecordError(self.errors)

    def required_id(self) -> str:
        value = self.record.get("id")
        if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
            self.fail("id", "missing" if value is None else f"no value: {show(value)}")
        elif not isinstance(value, str):
            self.fail("id", f"expected text, got {type_name(value)} {show(value)}")
        elif problem := _fits(value, ID_MAX):
            self.fail("id", problem)
        else:
            return value
        return ""

    def text(self, name: str, length: int | None = None) -> str | None:
        value = self.record.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(name, f"expected text, got {type_name(value)} {show(value)}")
            return None
        if problem := _fits(value, length):
            self.fail(name, problem)
            return None
        # "" and "None" both mean "no value" (see the module docstring).
        return None if value in ("", "None") else value

    def integer(self, name: str, maximum: int = INT_MAX) -> int | None:
        value = self.record.get(name)
        if value is None:
            return None
        number: int
        if isinstance(value, bool):
            self.fail(name, f"expected whole seconds or a count, got a boolean {value!r}")
            return None
        if isinstance(value, int):
            number = value
        elif isinstance(value, float):
            if not math.isfinite(value):
                self.fail(name, f"expected a number, got {show(value)}")
                return None
            number = math.floor(value)
        elif isinstance(value, str):
            text = value.strip()
            if text in ("", "None"):
                return None
            if not _DECIMAL.fullmatch(text):
                self.fail(name, f"expected a whole number, got {show(value)}")
                return None
            # Decimal, not float: "12345678901234567.9" must floor exactly.
            number = int(Decimal(text).to_integral_value(rounding=ROUND_FLOOR))
        else:
            self.fail(name, f"expected a number, got {type_name(value)} {show(value)}")
            return None
        if number < 0:
            self.fail(name, f"must not be negative, got {show(value)}")
            return None
        if number > maximum:
            self.fail(name, f"out of range (at most {maximum}), got {show(value)}")
            return None
        return number

    def boolean(self, name: str) -> bool | None:
        value = self.record.get(name)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return value == 1
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("", "none"):
                return None
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        self.fail(name, f"expected a boolean (true/false), got {show(value)}")
        return None

    def time(self, name: str) -> datetime | None:
        try:
            return parse_history_time(self.record.get(name))
        except ValueError as error:
            self.fail(name, str(error))
            return None

    def resource(self, expected: str) -> None:
        """Refuse a record whose own resource_uri says it is some other kind."""
        kind = _resource_of(self.record)
        if kind is not None and kind != expected:
            self.fail("resource_uri", f"a {kind} record, not a {expected} record")


def _fits(value: str, length: int | None) -> str | None:
    """Why a text value cannot be stored as it is, or None: a stored record keeps every
    value whole, and both databases must take what one takes (PostgreSQL holds no NUL in
    text and refuses a value longer than its column)."""
    if "\x00" in value:
        return "contains a NUL character"
    if length is not None and len(value) > length:
        return f"longer than {length} characters ({len(value)})"
    return None


def _resource_of(record: Mapping[str, Any]) -> str | None:
    uri = record.get("resource_uri")
    if not isinstance(uri, str):
        return None
    match = _RESOURCE_PATH.search(uri)
    if match is None:
        return None
    # "<resource>/<id>/" or a nested one, "participant/<id>/media_stream/<id>/": the last
    # resource named is the record's.
    parts = [part for part in match.group(1).split("/") if part]
    if not parts:
        return None
    return parts[-2] if len(parts) % 2 == 0 else parts[-1]


def _conference_id(fields: _Fields, uri: str | None) -> str | None:
    if uri is None:
        # The snapshot database carries the id itself; a record may too.
        return fields.text("conference_id")
    if "/" not in uri:
        conference_id = uri  # a bare id
    else:
        match = _CONFERENCE_URI.search(uri)
        if match is None or match.end() != len(uri):
            fields.fail(
                "conference", f"expected /api/admin/history/v1/conference/<id>/, got {show(uri)}"
            )
            return None
        conference_id = match.group(1)
    if problem := _fits(conference_id, ID_MAX):
        fields.fail("conference", f"its id is {problem}")
        return None
    return conference_id


def _typed(fields: _Fields, declared: Sequence[MNField]) -> dict[str, Any]:
    """The record's value of each declared field but ``id``, typed by its kind."""
    values: dict[str, Any] = {}
    for item in declared[1:]:
        name, spec = item.name, item.spec
        if spec.kind is Kind.TEXT:
            values[name] = fields.text(name, spec.length)
        elif spec.kind is Kind.INTEGER:
            values[name] = fields.integer(name, spec.maximum)
        elif spec.kind is Kind.BOOLEAN:
            values[name] = fields.boolean(name)
        else:
            values[name] = fields.time(name)
    return values


# `conference_id` is typed from `conference`, not read on its own.
_PARTICIPANT_TYPED: Final = tuple(f for f in PARTICIPANT_FIELDS if f.name != "conference_id")


def parse_participant(obj: Mapping[str, Any]) -> MNParticipant:
    """Type one participant history record (a dict from the API or from `read_csv_records`).

    Raises `HistoryRecordError` (a ValueError) listing every bad field: a missing or empty
    ``id``, a time that is not a time, an integer that is not a non-negative whole number
    (fractions are floored), a boolean that is not a boolean, text that is not text, a
    ``conference`` that is not a conference URI, or a ``resource_uri`` of another resource.
    Errors carry ``row=0``; `parse_document` fills in the record's number.
    """
    fields = _Fields(obj)
    record_id = fields.required_id()
    fields.resource("participant")
    values = _typed(fields, _PARTICIPANT_TYPED)
    values["conference_id"] = _conference_id(fields, values["conference"])
    fields.check()
    return MNParticipant(id=record_id, **values, raw=MappingProxyType(dict(obj)))


def parse_conference(obj: Mapping[str, Any]) -> MNConference:
    """Type one conference history record; raises `HistoryRecordError` as `parse_participant`."""
    fields = _Fields(obj)
    record_id = fields.required_id()
    fields.resource("conference")
    values = _typed(fields, CONFERENCE_FIELDS)
    fields.check()
    return MNConference(id=record_id, **values, raw=MappingProxyType(dict(obj)))


def record_kind(obj: Mapping[str, Any]) -> Literal["participant", "conference"]:
    """Whether a record is a participant or a conference record.

    Its ``resource_uri`` decides if it has one; otherwise its field names do (keys count even
    when their value is null, so every row of a CSV export gets the same answer). Raises
    `HistoryRecordError` for another resource (media stream, backplane, ...), or when the fields
    say both or neither.
    """
    kind = _resource_of(obj)
    if kind == "participant":
        return "participant"
    if kind == "conference":
        return "conference"
    fields = _Fields(obj)
    if kind is not None:
        fields.fail("resource_uri", f"a {kind} record, not a participant or conference record")
        fields.check()  # raises
    participant = sorted(PARTICIPANT_ONLY.intersection(obj))
    conference = sorted(CONFERENCE_ONLY.intersection(obj))
    if participant and not conference:
        return "participant"
    if conference and not participant:
        return "conference"
    if participant:
        reason = (
            f"has participant fields ({', '.join(participant[:3])}) and conference fields "
            f"({', '.join(conference[:3])}): cannot tell which record it is"
        )
    else:
        reason = (
            "neither a participant nor a conference record: no resource_uri and none of "
            "their fields (e.g. call_uuid, conference_name, name, participant_count)"
        )
    raise HistoryRecordError([RecordError(0, fields.record_id, None, reason)])


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """One record of a document, typed, or the problems that kept it from being typed."""

    row: int
    """1-based number of the record in its document."""
    record: MNParticipant | MNConference | None
    errors: tuple[RecordError, ...] = ()


def iter_document(chunks: Chunks, filename: str | None = None) -> Iterator[DocumentRecord]:
    """Type each record of a document given in chunks (`iter_items`), as it is read.

    A record that cannot be typed comes with its `RecordError`s (with its 1-based ``row`` and,
    where known, ``line``) and the others carry on; so does a CSV row of the wrong width.
    `HistoryFormatError` is raised when the document as a whole turns out unreadable, after
    the records before the fault. Duplicate ids are kept: deduplication is the caller's.
    """
    for row, item in enumerate(iter_items(chunks, filename), 1):
        if item.record is None:
            yield DocumentRecord(
                row, None, (RecordError(row, None, None, f"row {item.problem}", item.line),)
            )
            continue
        try:
            if record_kind(item.record) == "participant":
                yield DocumentRecord(row, parse_participant(item.record))
            else:
                yield DocumentRecord(row, parse_conference(item.record))
        except HistoryRecordError as error:
            yield DocumentRecord(
                row, None, tuple(replace(e, row=row, line=item.line) for e in error.errors)
            )


def parse_document(document: str | bytes, filename: str | None = None) -> ParsedDocument:
    """Read a whole document and type each of its records (`iter_document`).

    The caller decides whether a document with errors is rejected. `HistoryFormatError` is
    raised only when the document as a whole is unreadable.
    """
    participants: list[MNParticipant] = []
    conferences: list[MNConference] = []
    errors: list[RecordError] = []
    for typed in iter_document([document], filename):
        errors.extend(typed.errors)
        if isinstance(typed.record, MNParticipant):
            participants.append(typed.record)
        elif typed.record is not None:
            conferences.append(typed.record)
    return ParsedDocument(participants, conferences, errors)
