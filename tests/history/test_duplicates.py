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


async def test_import_history_reads_a_file_in_batches_and_counts_repeats_across_them(
    database_url: str, tmp_path: Path
) -> None:
    record = json.loads(PARTICIPANT.read_text())
    records = [{**record, "id": f"leg-{n:04d}"} for n in range(1200)]  # three batches of 500
    records[600] = {**record, "id": "leg-0003", "display_name": "second copy"}
    records[1100] = {**record, "id": "leg-0003", "display_name": "third copy"}
    export = tmp_path / "mn.jsonl"
    export.write_text("\n".join(json.dumps(r) for r in records))  # JSON lines
    done = cdrecon(database_url, "import-history", str(export))
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "1198 participant and 0 conference records" in out
    assert "1 id(s) found more than once, each stored once (its last copy): leg-0003" in out
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM mn_participants"))).scalar()
            name = (
                await conn.execute(
                    text("SELECT display_name FROM mn_participants WHERE id = 'leg-0003'")
                )
            ).scalar()
    finally:
        await engine.dispose()
    assert (count, name) == (1198, "third copy")


async def test_import_history_with_a_bad_record_past_the_first_batch_stores_nothing(
    database_url: str, tmp_path: Path
) -> None:
    record = json.loads(PARTICIPANT.read_text())
    records = [{**record, "id": f"leg-{n:04d}"} for n in range(1200)]
    records[1150] = {**record, "id": "leg-bad", "duration": "long"}
    export = tmp_path / "mn.json"
    export.write_text(json.dumps(records))
    done = cdrecon(database_url, "import-history", str(export))
    assert done.returncode == 1
    assert "1 bad record(s); nothing imported. First: record 1151 (leg-bad)" in done.stderr.decode()
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM mn_participants"))).scalar()
    finally:
        await engine.dispose()
    assert count == 0
