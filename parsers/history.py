"""Parse Management Node participant and conference history records from API JSON or CSV exports.

The records are what ``/api/admin/history/v1/participant/`` and ``…/conference/`` return
(docs/pexip-format.md section 6), reached in one of these shapes:

- JSON: a Tastypie page ``{"meta": {...}, "objects": [...]}``, a bare list of objects, a single
  object, or several of these one after another (JSON lines: one object per line; concatenated
  pages). A leading BOM is ignored; a document that is not JSON raises `HistoryFormatError` with
  the 1-based line and column of the fault.
- CSV: a header row of API field names and one row per record, as a PowerShell ``Export-Csv`` of
  the API objects writes it (section 8). Its artefacts are undone by `read_csv_records`.

Sans-IO: text or bytes in, frozen dataclasses out. Reading (`read_json_records`,
`read_csv_records`, `read_records`) only turns a document into plain dicts; `parse_participant`
and `parse_conference` type one dict each and raise `HistoryRecordError` listing every bad field.
`parse_document` does both and keeps going past bad records, so the caller sees every problem of a
document at once and decides whether to reject it.

Policies (one rule per kind of value, the same for JSON and CSV, so that one record parses to the
same typed fields whichever way it arrived):

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

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from types import MappingProxyType
from typing import Any, Final, Literal

__all__ = [
    "HistoryFormatError",
    "HistoryRecordError",
    "MNConference",
    "MNParticipant",
    "ParsedDocument",
    "RecordError",
    "parse_conference",
    "parse_document",
    "parse_history_time",
    "parse_participant",
    "read_csv_records",
    "read_json_records",
    "read_records",
    "record_kind",
]


# --- errors ----------------------------------------------------------------------------------


class HistoryFormatError(ValueError):
    """A whole document that is not history records: broken JSON, an unknown CSV header, ...

    ``line`` and ``column`` are 1-based and None where unknown. Columns count characters (after
    a leading BOM), except for bytes that are not UTF-8, where they count bytes.
    """

    def __init__(
        self,
        reason: str,
        line: int | None = None,
        column: int | None = None,
        filename: str | None = None,
    ) -> None:
        where = []
        if filename:
            where.append(filename)
        if line is not None:
            where.append(f"line {line}" if column is None else f"line {line}, column {column}")
        super().__init__(": ".join([*where, reason]))
        self.reason = reason
        self.line = line
        self.column = column
        self.filename = filename

    def __reduce__(
        self,
    ) -> tuple[type["HistoryFormatError"], tuple[str, int | None, int | None, str | None]]:
        # Keeps the error picklable (BaseException would re-create it from the message alone).
        return (type(self), (self.reason, self.line, self.column, self.filename))


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


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MNParticipant:
    """One participant history record (one call leg) as the Management Node holds it."""

    id: str
    call_uuid: str | None
    conversation_id: str | None
    conference: str | None  # the URI "/api/admin/history/v1/conference/<uuid>/"
    conference_id: str | None  # the <uuid> of `conference`
    conference_name: str | None
    display_name: str | None
    local_alias: str | None
    remote_alias: str | None
    protocol: str | None
    call_direction: str | None
    role: str | None
    disconnect_reason: str | None
    remote_address: str | None
    remote_port: int | None
    signalling_node: str | None
    media_node: str | None
    proxy_node: str | None
    system_location: str | None
    service_type: str | None
    service_tag: str | None
    call_tag: str | None
    vendor: str | None
    start_time: datetime | None  # UTC-aware; None for failed calls
    end_time: datetime | None  # UTC-aware
    duration: int | None  # whole seconds, as the MN gave them (it floors)
    has_media: bool | None
    encryption: str | None
    call_quality: str | None
    bandwidth: int | None
    rx_bandwidth: int | None
    tx_bandwidth: int | None
    license_count: int | None
    license_type: str | None
    # Every field as received (after CSV artefact clean-up), typed ones included: a read-only
    # view of a shallow copy. Not hashed; compared.
    raw: Mapping[str, Any] = field(repr=False, hash=False)


@dataclass(frozen=True, slots=True)
class MNConference:
    """One conference history record (one conference instance) as the Management Node holds it."""

    id: str
    name: str | None
    start_time: datetime | None  # UTC-aware
    end_time: datetime | None  # UTC-aware
    duration: int | None  # whole seconds, as the MN gave them
    participant_count: int | None  # calls, not people: a reconnect counts twice
    service_type: str | None
    tag: str | None
    raw: Mapping[str, Any] = field(repr=False, hash=False)  # as MNParticipant.raw


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """The records of one document that parsed, and the problems of those that did not."""

    participants: list[MNParticipant]
    conferences: list[MNConference]
    errors: list[RecordError]


# --- field tables ----------------------------------------------------------------------------

# Fields of each resource (pexip-format.md 6a/6b). Used to recognise a CSV header, to tell the
# two kinds of record apart, and to know which CSV columns hold text.
_PARTICIPANT_ONLY: Final = frozenset(
    {
        "av_id",
        "bandwidth",
        "bucketed_call_quality",
        "call_direction",
        "call_quality",
        "call_tag",
        "call_uuid",
        "conference",
        "conference_name",
        "conversation_id",
        "disconnect_reason",
        "display_name",
        "encryption",
        "has_media",
        "historic_call_quality",
        "idp_uuid",
        "is_direct",
        "is_idp_authenticated",
        "is_streaming",
        "license_count",
        "license_type",
        "local_alias",
        "media_node",
        "media_streams",
        "parent_id",
        "presentation_id",
        "protocol",
        "proxy_node",
        "remote_address",
        "remote_alias",
        "remote_port",
        "role",
        "rx_bandwidth",
        "service_tag",
        "signalling_node",
        "system_location",
        "transcoding_enabled",
        "tx_bandwidth",
        "vendor",
    }
)
_CONFERENCE_ONLY: Final = frozenset(
    {
        "direct_media_available",
        "instant_message_count",
        "name",
        "participant_count",
        "participants",
        "tag",
    }
)
_SHARED: Final = frozenset(
    {"duration", "end_time", "id", "resource_uri", "service_type", "start_time"}
)
_KNOWN_FIELDS: Final = _PARTICIPANT_ONLY | _CONFERENCE_ONLY | _SHARED
_KNOWN_BY_LOWER: Final = {name.lower(): name for name in _KNOWN_FIELDS}

# Fields whose values are text: a CSV cell "True" in one of them is a name, not a boolean.
_TEXT_FIELDS: Final = frozenset(
    {
        "av_id",
        "call_direction",
        "call_quality",
        "call_tag",
        "call_uuid",
        "conference",
        "conference_name",
        "conversation_id",
        "disconnect_reason",
        "display_name",
        "encryption",
        "end_time",
        "id",
        "idp_uuid",
        "license_type",
        "local_alias",
        "media_node",
        "name",
        "parent_id",
        "presentation_id",
        "protocol",
        "proxy_node",
        "remote_address",
        "remote_alias",
        "resource_uri",
        "role",
        "service_tag",
        "service_type",
        "signalling_node",
        "start_time",
        "system_location",
        "tag",
        "vendor",
    }
)

_RESOURCE_PATH: Final = re.compile(r"/history/v1/([^?#]*)", re.ASCII)
_CONFERENCE_URI: Final = re.compile(r"/conference/([^/\s]+)/?", re.ASCII)

# Larger than any real count, duration or bandwidth; keeps values inside a 32-bit SQL INTEGER.
_INT_MAX: Final = 2**31 - 1
_PORT_MAX: Final = 65535


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: object) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "text",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)


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
        raise ValueError(f"expected a time as text, got {_type_name(value)} {_show(value)}")
    text = value.strip()
    if text.lower() in _NULL_TEXT:
        return None
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(
            f"not a history time: {_show(value)} (expected e.g. '2020-12-21T08:59:29.878137')"
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
        raise ValueError(f"not a calendar time: {_show(value)} ({error})") from None
    return moment


# --- typing one record -----------------------------------------------------------------------

_DECIMAL: Final = re.compile(r"[+-]?\d+(?:\.\d*)?", re.ASCII)
_TRUE: Final = frozenset({"true", "1"})
_FALSE: Final = frozenset({"false", "0"})


class _Fields:
    """Reads typed fields of one record, collecting every problem instead of stopping at one."""

    __slots__ = ("errors", "record", "record_id")

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record
        record_id = record.get("id")
        usable = isinstance(record_id, str) and record_id.strip() not in ("", "None")
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
            self.fail("id", "missing" if value is None else f"no value: {_show(value)}")
        elif not isinstance(value, str):
            self.fail("id", f"expected text, got {_type_name(value)} {_show(value)}")
        else:
            return value
        return ""

    def text(self, name: str) -> str | None:
        value = self.record.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(name, f"expected text, got {_type_name(value)} {_show(value)}")
            return None
        # "" and "None" both mean "no value" (see the module docstring).
        return None if value in ("", "None") else value

    def integer(self, name: str, maximum: int = _INT_MAX) -> int | None:
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
                self.fail(name, f"expected a number, got {_show(value)}")
                return None
            number = math.floor(value)
        elif isinstance(value, str):
            text = value.strip()
            if text in ("", "None"):
                return None
            if not _DECIMAL.fullmatch(text):
                self.fail(name, f"expected a whole number, got {_show(value)}")
                return None
            # Decimal, not float: "12345678901234567.9" must floor exactly.
            number = int(Decimal(text).to_integral_value(rounding=ROUND_FLOOR))
        else:
            self.fail(name, f"expected a number, got {_type_name(value)} {_show(value)}")
            return None
        if number < 0:
            self.fail(name, f"must not be negative, got {_show(value)}")
            return None
        if number > maximum:
            self.fail(name, f"out of range (at most {maximum}), got {_show(value)}")
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
        self.fail(name, f"expected a boolean (true/false), got {_show(value)}")
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
        return uri  # a bare id
    match = _CONFERENCE_URI.search(uri)
    if match is None or match.end() != len(uri):
        fields.fail("conference", f"expected /api/admin/history/v1/conference/<id>/, got {uri!r}")
        return None
    return match.group(1)


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
    conference = fields.text("conference")
    participant = MNParticipant(
        id=record_id,
        call_uuid=fields.text("call_uuid"),
        conversation_id=fields.text("conversation_id"),
        conference=conference,
        conference_id=_conference_id(fields, conference),
        conference_name=fields.text("conference_name"),
        display_name=fields.text("display_name"),
        local_alias=fields.text("local_alias"),
        remote_alias=fields.text("remote_alias"),
        protocol=fields.text("protocol"),
        call_direction=fields.text("call_direction"),
        role=fields.text("role"),
        disconnect_reason=fields.text("disconnect_reason"),
        remote_address=fields.text("remote_address"),
        remote_port=fields.integer("remote_port", maximum=_PORT_MAX),
        signalling_node=fields.text("signalling_node"),
        media_node=fields.text("media_node"),
        proxy_node=fields.text("proxy_node"),
        system_location=fields.text("system_location"),
        service_type=fields.text("service_type"),
        service_tag=fields.text("service_tag"),
        call_tag=fields.text("call_tag"),
        vendor=fields.text("vendor"),
        start_time=fields.time("start_time"),
        end_time=fields.time("end_time"),
        duration=fields.integer("duration"),
        has_media=fields.boolean("has_media"),
        encryption=fields.text("encryption"),
        call_quality=fields.text("call_quality"),
        bandwidth=fields.integer("bandwidth"),
        rx_bandwidth=fields.integer("rx_bandwidth"),
        tx_bandwidth=fields.integer("tx_bandwidth"),
        license_count=fields.integer("license_count"),
        license_type=fields.text("license_type"),
        raw=MappingProxyType(dict(obj)),
    )
    fields.check()
    return participant


def parse_conference(obj: Mapping[str, Any]) -> MNConference:
    """Type one conference history record; raises `HistoryRecordError` as `parse_participant`."""
    fields = _Fields(obj)
    record_id = fields.required_id()
    fields.resource("conference")
    conference = MNConference(
        id=record_id,
        name=fields.text("name"),
        start_time=fields.time("start_time"),
        end_time=fields.time("end_time"),
        duration=fields.integer("duration"),
        participant_count=fields.integer("participant_count"),
        service_type=fields.text("service_type"),
        tag=fields.text("tag"),
        raw=MappingProxyType(dict(obj)),
    )
    fields.check()
    return conference


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
    participant = sorted(_PARTICIPANT_ONLY.intersection(obj))
    conference = sorted(_CONFERENCE_ONLY.intersection(obj))
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


# --- reading documents -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Item:
    """One record as read from a document, or why its row could not be read (CSV only)."""

    record: dict[str, Any] | None
    line: int | None
    problem: str | None = None


_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")


def _decode(document: str | bytes, filename: str | None) -> str:
    if isinstance(document, str):
        return document.removeprefix("\ufeff")
    if document.startswith(_UTF16_BOMS):
        # Windows PowerShell 5.1's Out-File and `>` write UTF-16 with a BOM.
        try:
            return document.decode("utf-16")
        except UnicodeDecodeError as error:
            raise HistoryFormatError(
                f"not UTF-16 text: {error.reason}", filename=filename
            ) from None
    try:
        return document.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = document[: error.start]
        line = before.count(b"\n") + 1
        column = error.start - (before.rfind(b"\n") + 1) + 1
        raise HistoryFormatError(
            f"not UTF-8 text: byte {document[error.start]:#04x} ({error.reason})",
            line,
            column,
            filename,
        ) from None


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


_JSON_SPACE: Final = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, index: int) -> int:
    match = _JSON_SPACE.match(text, index)
    return index if match is None else match.end()


def _json_items(text: str, filename: str | None) -> list[_Item]:
    decoder = json.JSONDecoder()
    items: list[_Item] = []
    index = _skip_space(text, 0)
    # One value after another: a single document, JSON lines, or concatenated pages alike.
    while index < len(text):
        start = index
        try:
            value, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError as error:
            raise HistoryFormatError(
                f"broken JSON: {error.msg}", error.lineno, error.colno, filename
            ) from None
        except RecursionError:
            line, column = _position(text, start)
            raise HistoryFormatError("JSON nested too deeply", line, column, filename) from None
        items.extend(_unwrap(value, text, start, filename))
        index = _skip_space(text, index)
    return items


def _unwrap(value: Any, text: str, start: int, filename: str | None) -> list[_Item]:
    line, column = _position(text, start)
    if isinstance(value, list):
        return [_list_item(element, number, line, filename) for number, element in enumerate(value)]
    if not isinstance(value, dict):
        raise HistoryFormatError(
            f"expected JSON objects, got {_type_name(value)}", line, column, filename
        )
    if "objects" in value:
        objects = value["objects"]
        if not isinstance(objects, list):
            raise HistoryFormatError(
                f'"objects" is {_type_name(objects)}, not a list', line, column, filename
            )
        return [
            _list_item(element, number, line, filename) for number, element in enumerate(objects)
        ]
    if "id" not in value:
        # Tastypie answers errors with {"error_message": ...} or {"error": ...}.
        for key in ("error_message", "error"):
            if key in value:
                raise HistoryFormatError(
                    f"an API error response: {_show(value[key])}", line, column, filename
                )
        if "meta" in value:
            raise HistoryFormatError('a Tastypie page without "objects"', line, column, filename)
    return [_Item(value, line)]


def _list_item(element: Any, number: int, line: int, filename: str | None) -> _Item:
    if not isinstance(element, dict):
        raise HistoryFormatError(
            f"item {number + 1} of the list is {_type_name(element)}, not an object",
            line,
            None,
            filename,
        )
    # Only a record that starts its own line has a line worth reporting.
    return _Item(element, None)


def read_json_records(document: str | bytes) -> list[dict[str, Any]]:
    """The records of a JSON document, as dicts, in document order.

    Takes a Tastypie page (``meta`` is ignored: fetching further pages is the caller's job), a
    bare list, a single object, or several of these in a row (JSON lines). A whitespace-only
    document has no records. Raises `HistoryFormatError`, with line and column, for text that
    is not JSON, a value that is not an object or list of objects, or an API error response.
    """
    return _records(_json_items(_decode(document, None), None), None)


# --- CSV -------------------------------------------------------------------------------------

# Characters Windows-1252 puts where Latin-1 has C1 controls, mapped back to their byte.
_CP1252_TO_BYTE: Final = {
    ord(bytes([byte]).decode("cp1252")): byte
    for byte in range(0x80, 0xA0)
    if byte not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)  # undefined in cp1252: stay C1 controls
}
_LOST_LIST: Final = re.compile(r"System\.[\w.`]+\[\]", re.ASCII)
_CSV_DELIMITERS: Final = (",", ";", "\t")
_NEWLINE: Final = re.compile(r"\r\n|\r|\n")


def _undo_double_utf8(value: str) -> str:
    """``"ZoÃ« Ã…ngstrÃ¶m"`` → ``"Zoë Ångström"``: UTF-8 that was decoded as Windows-1252/Latin-1.

    PowerShell's Invoke-RestMethod decodes a response without a charset as ISO-8859-1, and
    Export-Csv then writes that text as UTF-8 (pexip-format.md section 8). The value goes back to
    its bytes (Windows-1252 for the characters that only it has, such as "…" for 0x85, Latin-1
    for the rest) and is decoded as UTF-8; when that fails, the value was not double-encoded and
    is returned as it is. One pass only: a value that really says "Ã©" survives a round trip.
    """
    try:
        return value.translate(_CP1252_TO_BYTE).encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _clean_cell(name: str, cell: str) -> Any:
    if not cell.isascii():
        cell = _undo_double_utf8(cell)
    if cell in ("", "None") or _LOST_LIST.fullmatch(cell):
        # "System.Object[]" is what Export-Csv writes for a list: its content is gone.
        return None
    if name not in _TEXT_FIELDS and cell in ("True", "False"):
        return cell == "True"
    return cell


def _sniff_delimiter(header_line: str) -> str:
    def score(delimiter: str) -> int:
        cells = next(csv.reader([header_line], delimiter=delimiter), [])
        return sum(cell.strip().lower() in _KNOWN_BY_LOWER for cell in cells)

    # max() keeps the first of equal scores: "," when nothing tells them apart.
    return max(_CSV_DELIMITERS, key=score)


def _csv_items(text: str, filename: str | None) -> list[_Item]:
    first_line = 1
    if text.startswith("#TYPE"):
        # Windows PowerShell's Export-Csv writes "#TYPE <class>" first unless told not to.
        end = text.find("\n")
        text = "" if end < 0 else text[end + 1 :]
        first_line = 2
    if not text.strip():
        return []
    body = text.lstrip("\r\n")
    first_line += len(_NEWLINE.findall(text, 0, len(text) - len(body)))
    text = body
    header_line = _NEWLINE.split(text, maxsplit=1)[0]
    delimiter = _sniff_delimiter(header_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    items: list[_Item] = []
    consumed = 0
    try:
        header = next(reader)
        names = _header_names(header, first_line, filename)
        consumed = reader.line_num
        for row in reader:
            line = first_line + consumed
            consumed = reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # blank lines, and Excel's rows of bare delimiters
            if len(row) != len(names):
                problem = f"has {len(row)} cells, the header has {len(names)}"
                items.append(_Item(None, line, problem))
                continue
            record = {name: _clean_cell(name, cell) for name, cell in zip(names, row, strict=True)}
            items.append(_Item(record, line))
    except csv.Error as error:
        raise HistoryFormatError(
            f"broken CSV: {error}", first_line + consumed, None, filename
        ) from None
    return items


def _header_names(header: list[str], line: int, filename: str | None) -> list[str]:
    names: list[str] = []
    for number, cell in enumerate(header, 1):
        name = cell.strip()
        # API names are lower case; a spreadsheet may have capitalised them. Unknown names stay.
        name = _KNOWN_BY_LOWER.get(name.lower(), name)
        if not name:
            raise HistoryFormatError(f"header cell {number} is empty", line, None, filename)
        if name in names:
            raise HistoryFormatError(f"header cell {number} repeats {name!r}", line, None, filename)
        names.append(name)
    if not any(name in _KNOWN_FIELDS for name in names):
        raise HistoryFormatError(
            f"not a history export: the header {_show(', '.join(header))} names no history field",
            line,
            None,
            filename,
        )
    if "id" not in names:
        raise HistoryFormatError('the header has no "id" column', line, None, filename)
    return names


def read_csv_records(document: str | bytes) -> list[dict[str, Any]]:
    """The records of a CSV export of the history API, as dicts in document order.

    The header names the API fields (matched case-insensitively; unknown columns are kept).
    The delimiter is ``,``, ``;`` or tab, whichever makes the header name the most history
    fields. A BOM, CRLF, quoted delimiters and newlines, blank rows and PowerShell's ``#TYPE``
    line are handled. Each cell is cleaned of the export's artefacts: double-encoded UTF-8 is
    repaired (see `_undo_double_utf8`), ``""``/``"None"``/``"System.Object[]"`` become None, and
    ``"True"``/``"False"`` become booleans except in text fields. Numbers stay strings: the
    ``parse_*`` functions convert them. Raises `HistoryFormatError` for an unknown header, broken
    quoting, or a row whose width is not the header's (with its line).
    """
    return _records(_csv_items(_decode(document, None), None), None)


# --- either ----------------------------------------------------------------------------------


def _items(document: str | bytes, filename: str | None) -> list[_Item]:
    text = _decode(document, filename)
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        return _json_items(text, filename)
    return _csv_items(text, filename)


def _records(items: list[_Item], filename: str | None) -> list[dict[str, Any]]:
    for item in items:
        if item.problem is not None:
            raise HistoryFormatError(f"row {item.problem}", item.line, None, filename)
    return [item.record for item in items if item.record is not None]


def read_records(document: str | bytes, filename: str | None = None) -> list[dict[str, Any]]:
    """The records of a JSON or CSV document: JSON if it starts with ``{`` or ``[``, else CSV.

    The content decides, not ``filename``; the filename only prefixes error messages.
    """
    return _records(_items(document, filename), filename)


def parse_document(document: str | bytes, filename: str | None = None) -> ParsedDocument:
    """Read a document (`read_records`) and type each of its records.

    A record that cannot be typed adds its `RecordError`s (with its 1-based ``row`` and, where
    known, ``line``) and the others carry on; so does a CSV row of the wrong width. The caller
    decides whether a document with errors is rejected. `HistoryFormatError` is raised only when
    the document as a whole is unreadable. Duplicate ids are kept: deduplication is the caller's.
    """
    participants: list[MNParticipant] = []
    conferences: list[MNConference] = []
    errors: list[RecordError] = []
    for row, item in enumerate(_items(document, filename), 1):
        if item.record is None:
            errors.append(RecordError(row, None, None, f"row {item.problem}", item.line))
            continue
        try:
            if record_kind(item.record) == "participant":
                participants.append(parse_participant(item.record))
            else:
                conferences.append(parse_conference(item.record))
        except HistoryRecordError as error:
            errors.extend(replace(e, row=row, line=item.line) for e in error.errors)
    return ParsedDocument(participants, conferences, errors)
