"""Export rows: RFC 4180 CSV and JSON lines that read back to the same values, everywhere."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.csv as arrow_csv
from hypothesis import given
from hypothesis import strategies as st

from app.export.formats import COLUMNS, CsvEncoder, export_time, jsonl_line, record_from_cdr

NASTY = [
    'He said "hi", then left',
    "line one\r\nline two\nthree",
    '=HYPERLINK("http://evil")',
    "+1 555 0100",
    "-2+3",
    "@SUM(A1:A2)",
    "Zoë Ångström 日本",
    "",
]


def record(i: int, text: str) -> dict[str, object]:
    cdr = {c: None for c in COLUMNS}
    cdr.update(
        id=f"p-{i}",
        display_name=text,
        conference_name=f"room, {i}",
        protocol="SIP",
        start_us=1_795_687_200_123_456,
        end_us=1_795_687_260_000_001,
        duration=59,
        remote_port=5060,
    )
    return record_from_cdr(cdr)


def encode(records: list[dict[str, object]]) -> bytes:
    encoder = CsvEncoder()
    return encoder.header() + encoder.rows(records)


def test_csv_is_rfc4180_with_crlf_a_header_and_utc_times() -> None:
    data = encode([record(0, "x")])
    header, row, end = data.split(b"\r\n")
    assert header.decode() == ",".join(COLUMNS)
    assert end == b""
    assert b"2026-11-26T10:00:00.123456Z" in row
    assert b',"room, 0",' in row


def test_the_header_is_billings_fixed_column_order() -> None:
    """Billing imports by these columns: the declaration may grow, this order may not change."""
    assert CsvEncoder().header() == (
        b"id,call_uuid,conversation_id,conference_name,display_name,local_alias,remote_alias,"
        b"protocol,call_direction,role,start_time,end_time,duration,disconnect_reason,"
        b"remote_address,remote_port,signalling_node,media_node,proxy_node,system_location,"
        b"service_type,service_tag,vendor,has_media\r\n"
    )


def expected_cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def test_python_csv_reads_back_every_value_with_formulas_neutralised() -> None:
    records = [record(i, text) for i, text in enumerate(NASTY)]
    rows = list(csv.DictReader(io.StringIO(encode(records).decode(), newline="")))
    assert [r["display_name"] for r in rows] == [expected_cell(t) for t in NASTY]
    assert all(not r["display_name"].startswith(("=", "+", "-", "@")) for r in rows)
    assert rows[0]["duration"] == "59" and rows[0]["has_media"] == "true"


def test_a_spreadsheet_style_reader_reads_back_the_same_values() -> None:
    records = [record(i, text) for i, text in enumerate(NASTY)]
    table = arrow_csv.read_csv(
        io.BytesIO(encode(records)),
        parse_options=arrow_csv.ParseOptions(newlines_in_values=True),
        convert_options=arrow_csv.ConvertOptions(
            column_types={c: "string" for c in COLUMNS}, strings_can_be_null=False
        ),
    )
    assert table.column_names == list(COLUMNS)
    assert table.column("display_name").to_pylist() == [expected_cell(t) for t in NASTY]
    assert table.column("conference_name").to_pylist()[3] == "room, 3"


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40))
def test_any_text_round_trips_through_csv_and_jsonl(text: str) -> None:
    rec = record(1, text)
    [row] = list(csv.DictReader(io.StringIO(encode([rec]).decode(), newline="")))
    assert row["display_name"] == expected_cell(text)
    assert json.loads(jsonl_line(rec))["display_name"] == text


def test_times_have_one_fixed_width() -> None:
    assert export_time(1_795_687_200_000_000) == "2026-11-26T10:00:00.000000Z"
    assert export_time(None) is None
