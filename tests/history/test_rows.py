"""An imported conference record lands in `mn_conferences`, each declared field in its column."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from app.db.engine import create_engine
from app.db.models import mn_conferences
from app.history.service import conference_row, import_document
from parsers.history import parse_conference
from parsers.mn_record import CONFERENCE_FIELDS

FIXTURE = (
    Path(__file__).parents[1] / "fixtures/history/history_conference_object.pexip-docs-example.json"
)


def _us(text: str) -> int:
    return round(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1_000_000)


async def test_a_conference_record_is_stored_field_by_field(database_url: str) -> None:
    document = FIXTURE.read_text()
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await import_document(conn, document, "conference.json")
        async with engine.connect() as conn:
            [row] = (await conn.execute(select(mn_conferences))).mappings().all()
    finally:
        await engine.dispose()
    assert {key: value for key, value in row.items() if key != "imported_us"} == {
        "id": "8583f400-7886-48c9-874b-5fefc2ac097e",
        "name": "meet.alice",
        "start_us": _us("2015-04-02T09:36:53.712941"),
        "end_us": _us("2015-04-02T09:55:33.141261"),
        "duration": 579,
        "participant_count": 3,
        "service_type": "conference",
        "tag": None,  # the MN writes "" for no tag
        "record": row["record"],
        "source": "conference.json",
    }
    assert json.loads(row["record"]) == json.loads(document)


def test_a_conference_row_has_a_column_for_each_declared_field_and_no_other() -> None:
    record = parse_conference(json.loads(FIXTURE.read_text()))
    row = conference_row(record, "conference.json", 1)
    assert list(row) == [column.name for column in mn_conferences.columns]
    assert list(row)[: len(CONFERENCE_FIELDS)] == [f.column for f in CONFERENCE_FIELDS]
