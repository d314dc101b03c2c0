"""The streaming document readers give what reading each document whole gave: the same items,
the same faults at the same line and column, wherever the chunks of the document break."""

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.history import iter_document, parse_document
from parsers.history_documents import RECORD_MAX, HistoryFormatError, iter_items, read_items
from parsers.mn_record import KNOWN_FIELDS
from tests.parsers import whole_documents

FIXTURES = Path(__file__).parent.parent / "fixtures" / "history"
Outcome = tuple[Any, ...]


def whole(document: bytes | str) -> Outcome:
    """What the readers from before streaming made of `document`."""
    try:
        items = whole_documents.read_items(document, "doc")
    except whole_documents.HistoryFormatError as error:
        return ("refused", error.reason, error.line, error.column)
    return ("read", [(repr(i.record), i.line, i.problem) for i in items])


def streamed(chunks: list[bytes] | list[str]) -> Outcome:
    try:
        items = list(iter_items(chunks, "doc"))
    except HistoryFormatError as error:
        return ("refused", error.reason, error.line, error.column)
    return ("read", [(repr(i.record), i.line, i.problem) for i in items])


def expected(document: bytes | str) -> Outcome:
    """`whole`, except where streaming fixed it: a fault in UTF-8 after a BOM is placed
    counting the bytes after the BOM (the whole reader named the wrong byte)."""
    if isinstance(document, bytes) and document.startswith(b"\xef\xbb\xbf"):
        without = whole(document[3:])
        if without[0] == "refused" and without[1].startswith("not UTF-8"):
            return without
    return whole(document)


def cut(document: bytes | str, sizes: list[int]) -> list[Any]:
    """`document` in chunks of the given sizes (repeated), empty chunks included."""
    chunks, start, n = [], 0, 0
    while start < len(document):
        size = sizes[n % len(sizes)]
        chunks.append(document[start : start + size])
        start, n = start + size, n + 1
    return chunks


# --- documents -------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELD_NAMES = st.sampled_from(sorted(KNOWN_FIELDS)) | st.text(min_size=1, max_size=8)
RECORDS = st.dictionaries(FIELD_NAMES, VALUES, max_size=6).flatmap(
    lambda fields: st.builds(lambda id_: {"id": id_, **fields}, st.text(max_size=8))
)


@st.composite
def json_documents(draw: st.DrawFn) -> str:
    """One of the shapes the MN's history comes in, written in one of several styles."""
    values: list[Any] = []
    for _ in range(draw(st.integers(1, 3))):
        records = draw(st.lists(RECORDS, max_size=4))
        shape = draw(st.sampled_from(["page", "list", "object"]))
        if shape == "page":
            meta = {"limit": 20, "next": None, "total_count": len(records)}
            values.append({"meta": meta, "objects": records})
        elif shape == "list":
            values.append(records)
        else:
            values.extend(records)
    indent = draw(st.sampled_from([None, 0, 2, "\t"]))
    separators = draw(st.sampled_from([None, (",", ":"), (" , ", " : ")]))
    ascii_only = draw(st.booleans())
    between = draw(st.sampled_from(["\n", "\r\n", " ", "", "\n\n  "]))
    texts = [
        json.dumps(v, indent=indent, separators=separators, ensure_ascii=ascii_only) for v in values
    ]
    if between == "":
        texts = [t for t in texts if t.startswith(("{", "["))]
    return (
        draw(st.sampled_from(["", " ", "\n"]))
        + between.join(texts)
        + draw(st.sampled_from(["", "\n", " \r\n"]))
    )


CELLS = st.text(st.characters(blacklist_categories=["Cs"]), max_size=10) | st.sampled_from(
    ["True", "False", "None", "", "System.Object[]", "ZoÃ« Ã…ngstrÃ¶m", "1178.97"]
)


@st.composite
def csv_documents(draw: st.DrawFn) -> str:
    """A CSV export as PowerShell, Excel or a script may write it."""
    names = [
        "id",
        *draw(st.lists(FIELD_NAMES.filter(lambda n: n != "id"), max_size=4, unique_by=str.lower)),
    ]
    names = [n for n in names if n.strip()] or ["id"]
    rows = draw(st.lists(st.lists(CELLS, min_size=len(names), max_size=len(names)), max_size=5))
    out = io.StringIO()
    writer = csv.writer(
        out,
        delimiter=draw(st.sampled_from([",", ";", "\t"])),
        lineterminator=draw(st.sampled_from(["\r\n", "\n", "\r"])),
        quoting=draw(st.sampled_from([csv.QUOTE_ALL, csv.QUOTE_MINIMAL])),
    )
    writer.writerow(names)
    writer.writerows(rows)
    text = out.getvalue()
    if draw(st.booleans()):
        text = "#TYPE System.Management.Automation.PSCustomObject\r\n" + text
    return draw(st.sampled_from(["", "\r\n", "\n\n"])) + text


DOCUMENTS = json_documents() | csv_documents()
ENCODINGS: dict[str, Callable[[str], bytes | str]] = {
    "text": lambda text: text,
    "utf-8": str.encode,
    "utf-8 BOM": lambda text: b"\xef\xbb\xbf" + text.encode(),
    "utf-16": lambda text: text.encode("utf-16"),
    "utf-16-be": lambda text: "\ufeff".encode("utf-16-be") + text.encode("utf-16-be"),
}


def encode(text: str, encoding: str) -> bytes | str:
    try:
        return ENCODINGS[encoding](text)
    except UnicodeEncodeError:  # a lone surrogate: not in any document
        return text


SIZES = st.lists(st.integers(0, 9), min_size=1, max_size=5).filter(any)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A document with a few bytes cut, put in or changed: mostly not JSON or CSV any more."""
    document = draw(DOCUMENTS).encode()
    if draw(st.booleans()):
        document = b"\xef\xbb\xbf" + document
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(document)))
        change = draw(st.sampled_from(["cut here", "drop", "insert"]))
        if change == "cut here":
            document = document[:at]
        elif change == "drop":
            document = document[:at] + document[at + 1 :]
        else:
            stray = draw(st.sampled_from([*b'{}[],:"\\ \n\rtn0-eE.x;\t#', 0xFF, 0xC3, 0x00]))
            document = document[:at] + bytes([stray]) + document[at:]
    return document


# --- the properties --------------------------------------------------------------------------

FIXTURE_FILES = sorted(p.name for p in FIXTURES.iterdir() if p.suffix in (".json", ".csv"))


@pytest.mark.parametrize("name", FIXTURE_FILES)
@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10**9])
def test_each_fixture_reads_the_same_in_chunks_of_any_size(name: str, size: int) -> None:
    document = (FIXTURES / name).read_bytes()
    assert whole(document)[0] == "read"
    assert streamed(cut(document, [size])) == whole(document)
    parsed = parse_document(document)
    assert [r for r in iter_document(cut(document, [size]))] == list(iter_document([document]))
    assert parsed == parse_document(document)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS, st.sampled_from(sorted(ENCODINGS)), SIZES)
def test_generated_documents_read_the_same_in_chunks(
    text: str, encoding: str, sizes: list[int]
) -> None:
    document = encode(text, encoding)
    assert streamed(cut(document, sizes)) == expected(document)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(damaged(), SIZES)
def test_damaged_documents_are_refused_with_the_same_fault_at_the_same_place(
    document: bytes, sizes: list[int]
) -> None:
    assert streamed(cut(document, sizes)) == expected(document)


def test_a_long_record_over_many_pieces_reads_the_same() -> None:
    # Longer than the reader's piece (64 Ki characters): decoded across pieces.
    record = {"id": "long", "vendor": "v" * 300_000, "duration": 10**30}
    for document in (
        json.dumps([record, record]),
        json.dumps(record),
        f"id,vendor\nx,{'v' * 300_000}\n",
    ):
        assert streamed(cut(document, [4096])) == whole(document)
        assert streamed([document]) == whole(document)


def test_a_fault_past_the_first_pieces_is_placed_in_the_whole_document() -> None:
    records = [{"id": f"r{n}", "vendor": "x" * 50} for n in range(5000)]
    text = json.dumps(records, indent=1)
    broken = text[: len(text) // 2] + "}" + text[len(text) // 2 :]
    for document in (broken, broken.encode(), broken.encode("utf-16")):
        outcome = streamed(cut(document, [1000]))
        assert outcome == whole(document) and outcome[0] == "refused"
    bad_byte = text.encode()[:200_000] + b"\xff" + text.encode()[200_000:]
    assert streamed(cut(bad_byte, [777])) == whole(bad_byte)
    assert streamed(cut(bad_byte, [777]))[0] == "refused"


def test_an_encoding_fault_after_a_json_fault_is_the_one_reported() -> None:
    document = b'[{"id": "a",}]\n' + b"x" * 100_000 + b"\xff"
    assert whole(document)[1].startswith("not UTF-8")
    assert streamed(cut(document, [5])) == whole(document)


def test_items_come_before_the_document_is_read_to_its_end() -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"meta": {}, "objects": [{"id": "a"}, {"id": "b"},'
        raise AssertionError("read further than the first record needed")

    items = iter_items(chunks())
    assert next(items).record == {"id": "a"}


def test_a_page_with_objects_twice_is_refused_not_half_read() -> None:
    # json.loads kept the last list only; streaming refuses rather than keep both.
    with pytest.raises(HistoryFormatError, match='"objects" twice'):
        read_items('{"objects": [{"id": "a"}], "objects": [{"id": "b"}]}')


@pytest.mark.parametrize(
    ("document", "line", "column", "reason"),
    [
        # A record, in a list and on its own (its fields one by one), and a page's meta.
        ('[{"id": "a"},\n{"id": "b", "vendor": "' + "v" * RECORD_MAX + '"}]', 2, 1, "a JSON value"),
        ('{"id": "b", "vendor": "' + "v" * RECORD_MAX + '"}', 1, 23, "a JSON value"),
        (
            '{"id": "b", ' + ", ".join(f'"f{n}": "{"v" * 1000}"' for n in range(1100)) + "}",
            1,
            None,
            "an object",
        ),
        ('{"meta": [' + "1, " * (RECORD_MAX // 3) + '1], "objects": []}', 1, 10, "a JSON value"),
        ("id,vendor\r\na," + ",".join(["v" * 1000] * 1100) + "\r\n", 2, None, "a line"),
    ],
    ids=["list-item", "object-field", "object-fields", "page-meta", "csv-line"],
)
def test_a_record_longer_than_the_limit_is_refused_not_held(
    document: str, line: int, column: int | None, reason: str
) -> None:
    with pytest.raises(HistoryFormatError) as caught:
        list(iter_items(cut(document.encode(), [65536])))
    assert caught.value.reason.startswith(f"{reason} longer than {RECORD_MAX:,} characters")
    assert caught.value.line == line
    if column is not None:
        assert caught.value.column == column
