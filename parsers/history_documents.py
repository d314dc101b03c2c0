"""Read Management Node history documents into plain records: JSON, CSV, PowerShell artefacts.

The documents hold what ``/api/admin/history/v1/participant/`` and ``…/conference/`` return
(docs/pexip-format.md section 6), in one of these shapes:

- JSON: a Tastypie page ``{"meta": {...}, "objects": [...]}``, a bare list of objects, a single
  object, or several of these one after another (JSON lines: one object per line; concatenated
  pages). A leading BOM is ignored; a document that is not JSON raises `HistoryFormatError` with
  the 1-based line and column of the fault.
- CSV: a header row of API field names and one row per record, as a PowerShell ``Export-Csv`` of
  the API objects writes it (section 8). Its artefacts are undone by `read_csv_records`.
- Either in UTF-8 (with or without a BOM) or in UTF-16 with a BOM (Windows PowerShell 5.1's
  ``Out-File`` and ``>``).

Documents are read as a stream (`iter_items` takes the document in chunks of any size), so
memory follows the largest record (at most `RECORD_MAX` characters), not the document: JSON
is split into records at its outer levels here and each record is decoded by the standard
library's scanner (the same errors, at the same line and column, as decoding the document
whole); CSV goes through the csv module line by line. A document's faults are reported as
decoding it whole would report them: an encoding fault anywhere comes before a JSON or CSV
fault, and a JSON value's syntax before what it holds.

Sans-IO: text or bytes in, dicts out (`iter_items`, `read_json_records`, `read_csv_records`,
`read_records`, `read_items`); typing them is parsers/history.py's job.
"""

import codecs
import csv
import json
import re
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any, Final

from parsers.mn_record import KNOWN_FIELDS, TEXT_FIELDS

__all__ = [
    "RECORD_MAX",
    "Chunks",
    "DocumentItem",
    "HistoryFormatError",
    "iter_items",
    "read_csv_records",
    "read_items",
    "read_json_records",
    "read_records",
    "show",
    "type_name",
]


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


def show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def type_name(value: object) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "text",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)


# --- reading documents -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DocumentItem:
    """One record as read from a document, or why its row could not be read (CSV only)."""

    record: dict[str, Any] | None
    line: int | None
    problem: str | None = None


_KNOWN_BY_LOWER: Final = {name.lower(): name for name in KNOWN_FIELDS}
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM: Final = codecs.BOM_UTF8
# Text is handed on in pieces of at most this many characters (a whole document too), and
# read text is let go of once this much of it lies behind the reader.
_PIECE: Final = 64 * 1024
# The longest record (a JSON value, the fields of a top-level object beside its `objects`, a
# CSV line) a document may hold, in characters: what bounds a reader's memory. An MN record
# is a few KB; with a day's call-quality series, tens of KB.
RECORD_MAX: Final = 1024 * 1024

# A document in pieces: all bytes, or all text.
Chunks = Iterable[bytes | str]


def _utf8(chunks: Iterable[bytes], filename: str | None) -> Iterator[str]:
    """UTF-8 bytes as text; a fault names its byte, line and column (in bytes)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes fed to the decoder so far
    lines = 0  # newlines among them
    last_newline = -1  # offset of the last one
    for piece in chain(chunks, [None]):
        final = piece is None
        chunk = b"" if piece is None else piece
        pending = len(decoder.getstate()[0])
        try:
            text = decoder.decode(chunk, final)
        except UnicodeDecodeError as error:
            # error.object is the decoder's held-back bytes (never a newline) and this chunk.
            before = error.object[: error.start]
            at = offset - pending + error.start
            newline = before.rfind(b"\n")
            if newline >= 0:
                last_newline = offset - pending + newline
            raise HistoryFormatError(
                f"not UTF-8 text: byte {error.object[error.start]:#04x} ({error.reason})",
                lines + before.count(b"\n") + 1,
                at - last_newline,
                filename,
            ) from None
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            lines += chunk.count(b"\n")
            last_newline = offset + newline
        offset += len(chunk)
        yield text


def _utf16(chunks: Iterator[bytes], filename: str | None) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-16")()  # takes the byte order from the BOM
    try:
        for chunk in chunks:
            yield decoder.decode(chunk)
        yield decoder.decode(b"", True)
    except UnicodeDecodeError as error:
        raise HistoryFormatError(f"not UTF-16 text: {error.reason}", filename=filename) from None


def _decoded(chunks: Chunks, filename: str | None) -> Iterator[str]:
    """The text of a document given as chunks of bytes or of text, without its BOM."""
    pieces = iter(chunks)
    first = next((chunk for chunk in pieces if chunk), b"")
    if isinstance(first, str):
        yield first.removeprefix("\ufeff")
        yield from (str(piece) for piece in pieces)
        return
    head = bytes(first)
    while len(head) < len(_UTF8_BOM):  # enough to tell the encoding by
        more = next(pieces, None)
        if more is None:
            break
        head += bytes(more)  # type: ignore[arg-type]  # chunks of one kind
    rest = (bytes(piece) for piece in pieces)  # type: ignore[arg-type]
    if head.startswith(_UTF16_BOMS):
        yield from _utf16(chain([head], rest), filename)
        return
    yield from _utf8(chain([head.removeprefix(_UTF8_BOM)], rest), filename)


class _Text:
    """A document's text as it arrives: `buf` holds the part not yet let go of, and knows
    the line and column it starts at (1-based), so that every position can be named."""

    def __init__(self, chunks: Chunks, filename: str | None) -> None:
        self._pieces = _decoded(chunks, filename)
        self._pending = ""  # decoded text, from `_taken` on not yet in `buf`
        self._taken = 0
        self.buf = ""
        self.eof = False
        self._line = 1
        self._column = 1

    def more(self) -> bool:
        """Add the next piece of text to `buf`; False at the end of the document."""
        while self._taken >= len(self._pending):
            piece = next(self._pieces, None)
            if piece is None:
                self.eof = True
                return False
            self._pending, self._taken = piece, 0
        self.buf += self._pending[self._taken : self._taken + _PIECE]
        self._taken += _PIECE
        return True

    def reach(self, index: int) -> bool:
        """Whether `buf` holds position `index` (reading on as far as needed)."""
        while index >= len(self.buf):
            if not self.more():
                return False
        return True

    def release(self, index: int) -> int:
        """Let go of the text before `index` if there is much of it; `index` in `buf` after."""
        if index < _PIECE:
            return index
        gone = self.buf[:index]
        newlines = gone.count("\n")
        if newlines:
            self._line += newlines
            self._column = index - gone.rfind("\n")
        else:
            self._column += index
        self.buf = self.buf[index:]
        return 0

    def position(self, index: int) -> tuple[int, int]:
        """The line and column of `buf[index]`."""
        newline = self.buf.rfind("\n", 0, index)
        line = self._line + self.buf.count("\n", 0, index)
        return line, (index - newline if newline >= 0 else self._column + index)

    def drain(self) -> None:
        """Read the rest of the document: a fault in its encoding is reported first."""
        self._pending, self._taken = "", 0
        for _ in self._pieces:
            pass


# --- JSON ------------------------------------------------------------------------------------

_JSON_SPACE: Final = re.compile(r"[ \t\n\r]*")
_NOT_SPACE: Final = re.compile(r"\S")  # str.isspace's complement: what str.lstrip() keeps
# Beyond this many characters after a fault, more text cannot change it: the scanner looks
# ahead at most 9 ("-Infinity"). A string is the exception: it ends only at its quote.
_LOOKAHEAD: Final = 16
_UNTERMINATED: Final = "Unterminated string"


class _Deferred(Exception):
    """A fault in what a JSON value holds: reported once the value's syntax is known good."""


class _JsonReader:
    """Splits a JSON document into records at its outer levels (a top-level list, a page's
    ``objects``); each record, and every other value, is decoded whole by the json module."""

    def __init__(self, text: _Text, filename: str | None) -> None:
        self.text = text
        self.filename = filename
        self.decoder = json.JSONDecoder()
        self.top = (1, 1)  # line and column of the top-level value being read

    def fail(self, reason: str, index: int) -> HistoryFormatError:
        line, column = self.text.position(index)
        return HistoryFormatError(reason, line, column, self.filename)

    def space(self, index: int) -> int:
        """The index of the next character that is not JSON white space (or of the end)."""
        text = self.text
        while True:
            index = _JSON_SPACE.match(text.buf, index).end()  # type: ignore[union-attr]
            if index < len(text.buf) or not text.more():
                return index

    def char(self, index: int) -> str:
        return self.text.buf[index] if self.text.reach(index) else ""

    def value(self, index: int) -> tuple[Any, int]:
        """Decode the value at `index`, reading on until more text cannot change the result."""
        text = self.text
        while True:
            buf = text.buf
            try:
                value, end = self.decoder.raw_decode(buf, index)
            except json.JSONDecodeError as error:
                if text.eof or (
                    error.pos + _LOOKAHEAD < len(buf) and not error.msg.startswith(_UNTERMINATED)
                ):
                    raise self.fail(f"broken JSON: {error.msg}", error.pos) from None
            except RecursionError:
                raise HistoryFormatError(
                    "JSON nested too deeply", *self.top, self.filename
                ) from None
            else:
                if text.eof or end + _LOOKAHEAD < len(buf) or not isinstance(value, int | float):
                    self._check_length(index, end, "JSON value")
                    return value, end  # only a number may go on in the next piece
            self._read_on(index, "JSON value")

    def key(self, index: int) -> tuple[str, int]:
        """Decode the object key whose quote is at `index`."""
        text = self.text
        while True:
            buf = text.buf
            try:
                name, end = scanstring(buf, index + 1, True)
            except json.JSONDecodeError as error:
                if text.eof or (
                    error.pos + _LOOKAHEAD < len(buf) and not error.msg.startswith(_UNTERMINATED)
                ):
                    raise self.fail(f"broken JSON: {error.msg}", error.pos) from None
            else:
                self._check_length(index, end, "JSON key")
                return name, end
            self._read_on(index, "JSON key")

    def _check_length(self, start: int, end: int, what: str) -> None:
        if end - start > RECORD_MAX:
            raise self.fail(f"a {what} longer than {RECORD_MAX:,} characters", start)

    def _read_on(self, index: int, what: str) -> None:
        # At least double what is held from `index`, so a long value is decoded a few times
        # at most, not once per piece; and never much more than the longest record.
        text = self.text
        self._check_length(index, len(text.buf), what)
        target = len(text.buf) + max(len(text.buf) - index, _PIECE)
        while len(text.buf) < target and text.more():
            pass

    def items(self) -> Iterator[DocumentItem]:
        # One value after another: a single document, JSON lines, or concatenated pages alike.
        index = self.space(0)
        while index < len(self.text.buf):
            index = self.text.release(index)
            self.top = self.text.position(index)
            try:
                index = yield from self.top_level(index)
            except _Deferred as deferred:
                raise HistoryFormatError(str(deferred), *self.top, self.filename) from None
            index = self.space(index)

    def top_level(self, index: int) -> Generator[DocumentItem, None, int]:
        """The records of the top-level value at `index`; returns the index after it."""
        opening = self.text.buf[index]
        if opening == "[":
            return (yield from self.records(index))
        if opening == "{":
            return (yield from self.object(index))
        value, index = self.value(index)
        raise _Deferred(f"expected JSON objects, got {type_name(value)}")

    def records(self, index: int) -> Generator[DocumentItem, None, int]:
        """The objects of the list at `index` (the top level or a page's ``objects``)."""
        problem: str | None = None  # the first item that is not an object
        number = 0
        index = self.space(index + 1)
        if self.char(index) == "]":
            return index + 1
        while True:
            element, index = self.value(index)
            if problem is None and not isinstance(element, dict):
                problem = f"item {number + 1} of the list is {type_name(element)}, not an object"
            if problem is None:
                # Only a record that starts its own line has a line worth reporting.
                yield DocumentItem(element, None)
            number += 1
            index = self.text.release(self.space(index))
            separator = self.char(index)
            if separator == "]":
                break
            if separator != ",":
                raise self.fail("broken JSON: Expecting ',' delimiter", index)
            index = self.space(index + 1)
        if problem is not None:
            # As json.loads of the whole list would: its syntax first, then its items.
            line, _ = self.top
            raise HistoryFormatError(problem, line, None, self.filename)
        return index + 1

    def object(self, index: int) -> Generator[DocumentItem, None, int]:
        """A top-level object: a Tastypie page (its ``objects`` read as they come), an API
        error response, or a single record."""
        fields: dict[str, Any] = {}
        held = 0  # characters of the values kept in `fields`
        objects: Any = None
        paged = False
        index = self.space(index + 1)
        if self.char(index) != "}":
            while True:
                if self.char(index) != '"':
                    raise self.fail(
                        "broken JSON: Expecting property name enclosed in double quotes", index
                    )
                name, index = self.key(index)
                index = self.space(index)
                if self.char(index) != ":":
                    raise self.fail("broken JSON: Expecting ':' delimiter", index)
                index = self.space(index + 1)
                if name == "objects" and paged:
                    # json.loads would keep the last list and drop the records already read.
                    raise self.fail('a Tastypie page with "objects" twice', index)
                if name == "objects" and self.char(index) == "[":
                    paged = True
                    index = yield from self.records(index)
                else:
                    start = index
                    value, index = self.value(index)
                    held += len(name) + index - start
                    if held > RECORD_MAX:
                        raise self.fail(f"an object longer than {RECORD_MAX:,} characters", start)
                    if name == "objects":
                        objects = value
                    fields[name] = value
                index = self.text.release(self.space(index))
                separator = self.char(index)
                if separator == "}":
                    break
                if separator != ",":
                    raise self.fail("broken JSON: Expecting ',' delimiter", index)
                index = self.space(index + 1)
        if paged:
            return index + 1
        if "objects" in fields:
            raise _Deferred(f'"objects" is {type_name(objects)}, not a list')
        if "id" not in fields:
            # Tastypie answers errors with {"error_message": ...} or {"error": ...}.
            for name in ("error_message", "error"):
                if name in fields:
                    raise _Deferred(f"an API error response: {show(fields[name])}")
            if "meta" in fields:
                raise _Deferred('a Tastypie page without "objects"')
        yield DocumentItem(fields, self.top[0])
        return index + 1


def _json_items(text: _Text, filename: str | None) -> Iterator[DocumentItem]:
    return _JsonReader(text, filename).items()


def read_json_records(document: str | bytes) -> list[dict[str, Any]]:
    """The records of a JSON document, as dicts, in document order.

    Takes a Tastypie page (``meta`` is ignored: fetching further pages is the caller's job), a
    bare list, a single object, or several of these in a row (JSON lines). A whitespace-only
    document has no records. Raises `HistoryFormatError`, with line and column, for text that
    is not JSON, a value that is not an object or list of objects, or an API error response.
    """
    return _records(_checked(_Text([document], None), _json_items))


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
    if name not in TEXT_FIELDS and cell in ("True", "False"):
        return cell == "True"
    return cell


def _sniff_delimiter(header_line: str) -> str:
    def score(delimiter: str) -> int:
        cells = next(csv.reader([header_line], delimiter=delimiter), [])
        return sum(cell.strip().lower() in _KNOWN_BY_LOWER for cell in cells)

    # max() keeps the first of equal scores: "," when nothing tells them apart.
    return max(_CSV_DELIMITERS, key=score)


_LINE: Final = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")


def _lines(text: _Text, index: int, filename: str | None) -> Iterator[str]:
    """The lines from `index` on, each with its end (``\\n``, ``\\r\\n`` or ``\\r``), as
    ``io.StringIO(text, newline="")`` gives them; the last may have none."""
    while True:
        buf = text.buf
        match = _LINE.match(buf, index)
        # The end of the line at `index`, if it has arrived: a "\r" at the end of what arrived
        # may be the first half of "\r\n".
        end = None
        if match is not None and (match.end() < len(buf) or buf[-1] != "\r" or text.eof):
            end = match.end()
        if (len(buf) if end is None else end) - index > RECORD_MAX:
            raise HistoryFormatError(
                f"a line longer than {RECORD_MAX:,} characters",
                text.position(index)[0],
                filename=filename,
            )
        if end is not None:
            yield buf[index:end]
            index = text.release(end)
        elif not text.more():
            if index < len(buf):
                yield buf[index:]
            return


def _csv_items(text: _Text, filename: str | None) -> Iterator[DocumentItem]:
    first_line = 1
    index = 0
    text.reach(len("#TYPE"))
    if text.buf.startswith("#TYPE"):
        # Windows PowerShell's Export-Csv writes "#TYPE <class>" first unless told not to.
        while (end := text.buf.find("\n", index)) < 0:
            index = text.release(len(text.buf))
            if not text.more():
                return
        index = end + 1
        first_line = 2
    lines = _lines(text, index, filename)
    header_line = ""
    for header_line in lines:
        if header_line.strip("\r\n"):
            break
        first_line += 1  # a line of nothing but its end (one \r\n, \r or \n)
    else:
        return
    if header_line.isspace():
        # Nothing but white space may follow (no records); anything else is under an empty
        # header, which _header_names refuses.
        if all(line.isspace() for line in lines):
            return
        _header_names([header_line], first_line, filename)
    delimiter = _sniff_delimiter(header_line.rstrip("\r\n"))
    reader = csv.reader(chain([header_line], lines), delimiter=delimiter, strict=True)
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
                yield DocumentItem(None, line, problem)
                continue
            record = {name: _clean_cell(name, cell) for name, cell in zip(names, row, strict=True)}
            yield DocumentItem(record, line)
    except csv.Error as error:
        raise HistoryFormatError(
            f"broken CSV: {error}", first_line + consumed, None, filename
        ) from None


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
    if not any(name in KNOWN_FIELDS for name in names):
        raise HistoryFormatError(
            f"not a history export: the header {show(', '.join(header))} names no history field",
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
    return _records(_checked(_Text([document], None), _csv_items))


# --- either ----------------------------------------------------------------------------------


def _checked(
    text: _Text,
    read: Callable[[_Text, str | None], Iterator[DocumentItem]],
    filename: str | None = None,
) -> Iterator[DocumentItem]:
    """`read`'s items, with a fault in the document's encoding reported before its own."""
    try:
        yield from read(text, filename)
    except HistoryFormatError:
        text.drain()
        raise


def _either(text: _Text, filename: str | None) -> Iterator[DocumentItem]:
    index = 0
    while (found := _NOT_SPACE.search(text.buf, index)) is None:
        index = len(text.buf)
        if not text.more():
            return iter(())
    if found.group() in ("{", "["):
        return _json_items(text, filename)
    return _csv_items(text, filename)


def iter_items(chunks: Chunks, filename: str | None = None) -> Iterator[DocumentItem]:
    """The items of a JSON or CSV document given in chunks of any size (bytes, or text), as
    they are read: what `read_items` returns for the chunks joined. A `HistoryFormatError`
    comes when the fault is reached, after the items before it."""
    text = _Text(chunks, filename)
    return _checked(text, lambda text, name: _either(text, name), filename)


def read_items(document: str | bytes, filename: str | None = None) -> list[DocumentItem]:
    """The records of a JSON or CSV document (as `read_records`), each with its line, and the
    CSV rows of the wrong width as items with a problem instead of a record."""
    return list(iter_items([document], filename))


def _records(items: Iterable[DocumentItem], filename: str | None = None) -> list[dict[str, Any]]:
    items = list(items)  # the whole document first: its format faults come before a row's
    for item in items:
        if item.problem is not None:
            raise HistoryFormatError(f"row {item.problem}", item.line, None, filename)
    return [item.record for item in items if item.record is not None]


def read_records(document: str | bytes, filename: str | None = None) -> list[dict[str, Any]]:
    """The records of a JSON or CSV document: JSON if it starts with ``{`` or ``[``, else CSV.

    The content decides, not ``filename``; the filename only prefixes error messages.
    """
    return _records(read_items(document, filename), filename)
