"""A SQLite database file deleted, or its directory moved, under a running service shows on
/healthz (503, with the reason) and in the log at once."""

from __future__ import annotations

from pathlib import Path

import pytest

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
