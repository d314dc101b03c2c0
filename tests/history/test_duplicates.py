"""An MN export holding the same id twice: stored once (its last copy), counted as stored,
and the repeated id reported, by the CLI as by the upload (tests/history/test_upload.py)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from app.db.engine import create_engine
from tests.conftest import cdrecon

PARTICIPANT = (
    Path(__file__).parents[1]
    / "fixtures"
    / "history"
    / "history_participant_object.pexip-docs-example.json"
)


async def test_import_history_counts_an_id_twice_once_and_names_it(
    database_url: str, tmp_path: Path
) -> None:
    record = json.loads(PARTICIPANT.read_text())
    records = [
        {**record, "id": "leg-1", "display_name": "first copy"},
        {**record, "id": "leg-2"},
        {**record, "id": "leg-1", "display_name": "last copy"},
    ]
    export = tmp_path / "mn.json"
    export.write_text(json.dumps(records))
    done = cdrecon(database_url, "import-history", str(export))
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "2 participant and 0 conference records" in out
    assert "1 id(s) found more than once, each stored once (its last copy): leg-1" in out
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT id, display_name FROM mn_participants ORDER BY id"))
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [("leg-1", "last copy"), ("leg-2", "Bob")]
