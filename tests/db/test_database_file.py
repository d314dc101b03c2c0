"""A SQLite database file deleted, or its directory moved, under a running service shows on
/healthz (503, with the reason) and in the log at once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from app.db.engine import create_engine, existing_only
from tests.conftest import Service


@pytest.mark.parametrize("remove", ["file", "directory"])
def test_a_database_file_gone_from_its_path_is_reported(tmp_path: Path, remove: str) -> None:
    home = tmp_path / "data"
    home.mkdir()
    service = Service(
        tmp_path, env={"CDRECON_DATABASE_URL": f"sqlite+aiosqlite:///{home / 'cdrecon.db'}"}
    )
    service.start()
    try:
        assert service.get("/healthz", token="").status_code == 200
        if remove == "file":
            (home / "cdrecon.db").unlink()
        else:
            home.rename(tmp_path / "moved")
        health = service.get("/healthz", token="")
        assert health.status_code == 503, health.text
        assert health.json()["status"] == "unavailable"
        assert "was deleted or moved" in health.json()["database"]
        assert "was deleted or moved while cdrecon runs" in service.log
        assert not (home / "cdrecon.db").exists()  # no empty database made in its place
    finally:
        service.stop()


async def test_a_process_beside_the_service_opens_the_database_only_where_it_exists(
    tmp_path: Path,
) -> None:
    """The deriving process (`existing_only`) may start after the file was deleted: it must
    fail, not create an empty database in the service's place."""
    missing = tmp_path / "gone.db"
    engine = create_engine(existing_only(f"sqlite+aiosqlite:///{missing}"))
    with pytest.raises(OperationalError):
        async with engine.connect():
            pass
    await engine.dispose()
    assert not missing.exists()
    present = tmp_path / "here.db"
    sqlite3.connect(present).close()
    engine = create_engine(existing_only(f"sqlite+aiosqlite:///{present}"))
    async with engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT 1")).scalar_one() == 1
    await engine.dispose()
