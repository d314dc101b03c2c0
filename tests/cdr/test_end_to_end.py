"""A scripted conference sent live with `logger` and backfilled from gzip: exact CDRs, once."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from tests.cdr.scenario import CALL_EVENTS, EXPECTED, LINES
from tests.conftest import Service, send_with_logger


def import_syslog(service: Service, *files: str, stdin: bytes | None = None) -> str:
    return service.cli("import-syslog", *files, stdin=stdin)


def test_live_and_backfilled_conference_gives_each_cdr_once(
    service: Service, logger_path: str, tmp_path: Path
) -> None:
    service.start()
    live = tmp_path / "live.txt"
    # The first line twice: a resent duplicate.
    live.write_text("\n".join([LINES[0].body] + [line.body for line in LINES]) + "\n")
    send_with_logger(logger_path, service, live, timeout=30)
    assert service.wait_for("cdrecon_messages_stored_total", len(LINES) + 1) == len(LINES) + 1

    backfill = tmp_path / "pexip.log.1.gz"
    with gzip.open(backfill, "wt") as out:
        out.write("".join(line.rsyslog() + "\n" for line in LINES))
    summary = import_syslog(service, str(backfill))
    assert f"lines {len(LINES)}, stored {len(LINES)}, duplicates 0" in summary
    again = import_syslog(service, "-", stdin=backfill.read_bytes())
    assert f"stored 0, duplicates {len(LINES)}" in again

    stats = service.get("/api/v1/stats").json()
    assert stats["messages"] == 2 * len(LINES) + 1
    assert stats["events"] == CALL_EVENTS
    assert stats["cdrs"] == len(EXPECTED)

    items = service.get("/api/v1/cdrs?limit=1000").json()["items"]
    assert {
        i["id"]: (i["state"], i["duration"], i["disconnect_reason"], i["protocol"]) for i in items
    } == EXPECTED
    alice = service.get("/api/v1/cdrs/p-alice").json()
    assert alice["start_time"] == "2026-11-26T10:00:00Z"
    assert alice["end_time"] == "2026-11-26T10:30:00.500000Z"
    assert alice["call_uuid"] == "c1@10.0.0.5"
    # The join arrived twice live and once from the file; the leave once each way.
    assert [len(e["message_ids"]) for e in alice["events"]] == [3, 2]
    assert service.get("/api/v1/cdrs/nobody").status_code == 404

    conferences = service.get("/api/v1/conferences").json()
    assert [
        (c["name"], c["start_time"], c["end_time"], c["participant_count"]) for c in conferences
    ] == [
        # Dave joins after everyone else left: a new instance of the same conference.
        ("Weekly sync", "2026-11-26T10:00:00Z", "2026-11-26T10:30:00.500000Z", 4),
        ("Weekly sync", "2026-11-26T10:40:00Z", None, 1),
    ]
    filtered = service.get(
        "/api/v1/cdrs?protocol=webrtc&from=2026-11-26T10:30:00Z&until=2026-11-26T11:00:00Z"
    ).json()["items"]
    assert [i["id"] for i in filtered] == ["p-dave"]


@pytest.mark.parametrize(
    "settings",
    ["CDRECON_DERIVE_PROCESS=false CDRECON_DEFER_BACKLOG=-1", "CDRECON_DERIVE_PROCESS=true"],
)
def test_a_receiver_that_defers_deriving_catches_up_by_itself(
    service: Service, logger_path: str, tmp_path: Path, settings: str
) -> None:
    """With deriving always deferred in one process, or done by the deriving process, the
    messages are stored first and the CDRs follow, without anything else happening."""
    for setting in settings.split():
        name, value = setting.split("=")
        service.env[name] = value
    service.start()
    live = tmp_path / "live.txt"
    live.write_text("".join(line.body + "\n" for line in LINES))
    subprocess.run(
        [
            *(logger_path, "-n", "127.0.0.1", "-P", str(service.tcp_port), "--tcp"),
            *("--octet-count", "--rfc5424", "-t", "pexip", "-f", str(live)),
        ],
        check=True,
        timeout=30,
    )
    assert service.wait_for("cdrecon_messages_stored_total", len(LINES)) == len(LINES)
    assert service.wait_for("cdrecon_events_total", CALL_EVENTS) == CALL_EVENTS
    assert service.metric("cdrecon_derive_pending_messages") == 0
    assert service.get("/api/v1/stats").json()["derive_pending"] == 0
    items = service.get("/api/v1/cdrs?limit=1000").json()["items"]
    assert {
        i["id"]: (i["state"], i["duration"], i["disconnect_reason"], i["protocol"]) for i in items
    } == EXPECTED
