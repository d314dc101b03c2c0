"""How an exported record looks, in CSV and JSON lines: pure and byte-stable.

Columns are the Management Node's participant history field names, in the fixed order
parsers/mn_record.py declares, so that billing imports recovered records exactly as it
imports MN data.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from parsers.mn_record import EXPORT_FIELDS, PARTICIPANT_FIELDS, Kind

COLUMNS: tuple[str, ...] = EXPORT_FIELDS
# The exported times: (field, its `cdrs` column).
_TIMES = tuple(
    (f.name, f.column) for f in PARTICIPANT_FIELDS if f.spec.export and f.spec.kind is Kind.TIME
)

# A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_time(us: int | None) -> str | None:
    """UTC ISO 8601 with microseconds and `Z`: one fixed width, so bytes never vary."""
    if us is None:
        return None
    moment = datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def has_media(protocol: str | None) -> bool:
    """Whether a leg carried media: the WebRTC `API` leg is signalling only."""
    return (protocol or "").upper() != "API"


def record_from_cdr(cdr: Mapping[str, Any]) -> dict[str, Any]:
    """The MN-shaped export object of a `cdrs` row, keys in COLUMNS order."""
    values = dict(cdr)
    for name, column in _TIMES:
        values[name] = export_time(cdr.get(column))
    values["has_media"] = has_media(cdr.get("protocol"))
    return {column: values.get(column) for column in COLUMNS}


def jsonl_line(record: Mapping[str, Any]) -> bytes:
    """One JSON lines record: compact, UTF-8, keys in COLUMNS order."""
    return (
        json.dumps({c: record.get(c) for c in COLUMNS}, ensure_ascii=False, separators=(",", ":"))
        + "\n"
    ).encode()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


class CsvEncoder:
    """Encodes records as RFC 4180 rows (CRLF, quotes doubled), UTF-8, many at a time."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    def header(self) -> bytes:
        """The header row."""
        self._writer.writerow(COLUMNS)
        return self._take()

    def rows(self, records: Iterable[Mapping[str, Any]]) -> bytes:
        """The rows of `records`, in order."""
        self._writer.writerows([_cell(r.get(c)) for c in COLUMNS] for r in records)
        return self._take()

    def _take(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode()
