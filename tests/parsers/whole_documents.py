"""The MN document readers as they were before they streamed (main at c5b7378), verbatim but
for this line and the parts both share (imported from parsers.history_documents): the oracle
tests/parsers/test_history_streaming.py holds the streaming readers to."""

import csv
import io
import json
import re
from typing import Any, Final

# What the streaming readers kept unchanged is theirs, not copied here.
from parsers.history_documents import (
    DocumentItem,
    HistoryFormatError,
    _clean_cell,
    _header_names,
    _sniff_delimiter,
    show,
    type_name,
)
from parsers.mn_record import KNOWN_FIELDS

__all__ = [
    "DocumentItem",
    "HistoryFormatError",
    "read_csv_records",
    "read_items",
    "read_json_records",
    "read_records",
    "show",
    "type_name",
]


# --- reading documents -----------------------------------------------------------------------


_KNOWN_BY_LOWER: Final = {name.lower(): name for name in KNOWN_FIELDS}
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


def _json_items(text: str, filename: str | None) -> list[DocumentItem]:
    decoder = json.JSONDecoder()
    items: list[DocumentItem] = []
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


def _unwrap(value: Any, text: str, start: int, filename: str | None) -> list[DocumentItem]:
    line, column = _position(text, start)
    if isinstance(value, list):
        return [_list_item(element, number, line, filename) for number, element in enumerate(value)]
    if not isinstance(value, dict):
        raise HistoryFormatError(
            f"expected JSON objects, got {type_name(value)}", line, column, filename
        )
    if "objects" in value:
        objects = value["objects"]
        if not isinstance(objects, list):
            raise HistoryFormatError(
                f'"objects" is {type_name(objects)}, not a list', line, column, filename
            )
        return [
            _list_item(element, number, line, filename) for number, element in enumerate(objects)
        ]
    if "id" not in value:
        # Tastypie answers errors with {"error_message": ...} or {"error": ...}.
        for key in ("error_message", "error"):
            if key in value:
                raise HistoryFormatError(
                    f"an API error response: {show(value[key])}", line, column, filename
                )
        if "meta" in value:
            raise HistoryFormatError('a Tastypie page without "objects"', line, column, filename)
    return [DocumentItem(value, line)]


def _list_item(element: Any, number: int, line: int, filename: str | None) -> DocumentItem:
    if not isinstance(element, dict):
        raise HistoryFormatError(
            f"item {number + 1} of the list is {type_name(element)}, not an object",
            line,
            None,
            filename,
        )
    # Only a record that starts its own line has a line worth reporting.
    return DocumentItem(element, None)


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


def _csv_items(text: str, filename: str | None) -> list[DocumentItem]:
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
    items: list[DocumentItem] = []
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
                items.append(DocumentItem(None, line, problem))
                continue
            record = {name: _clean_cell(name, cell) for name, cell in zip(names, row, strict=True)}
            items.append(DocumentItem(record, line))
    except csv.Error as error:
        raise HistoryFormatError(
            f"broken CSV: {error}", first_line + consumed, None, filename
        ) from None
    return items


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


def read_items(document: str | bytes, filename: str | None = None) -> list[DocumentItem]:
    """The records of a JSON or CSV document (as `read_records`), each with its line, and the
    CSV rows of the wrong width as items with a problem instead of a record."""
    text = _decode(document, filename)
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        return _json_items(text, filename)
    return _csv_items(text, filename)


def _records(items: list[DocumentItem], filename: str | None) -> list[dict[str, Any]]:
    for item in items:
        if item.problem is not None:
            raise HistoryFormatError(f"row {item.problem}", item.line, None, filename)
    return [item.record for item in items if item.record is not None]


def read_records(document: str | bytes, filename: str | None = None) -> list[dict[str, Any]]:
    """The records of a JSON or CSV document: JSON if it starts with ``{`` or ``[``, else CSV.

    The content decides, not ``filename``; the filename only prefixes error messages.
    """
    return _records(read_items(document, filename), filename)
