"""Repeated warnings are logged at a bounded rate, and what was left out is said."""

from __future__ import annotations

import logging

import pytest

from app.receiver.logging_limit import LimitedLog


def test_a_burst_per_period_then_how_many_were_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = LimitedLog(
        logging.getLogger("test.limited"), burst=3, period=60, clock=lambda: now[0]
    )
    with caplog.at_level(logging.WARNING, "test.limited"):
        for i in range(100):
            limited.warning("refused %d", i)
        assert [r.getMessage() for r in caplog.records] == ["refused 0", "refused 1", "refused 2"]
        caplog.clear()
        now[0] = 61.0
        limited.warning("refused %d", 100)
    assert [r.getMessage() for r in caplog.records] == [
        "97 more like the next were not logged in the last 61s "
        "(see cdrecon_connections_rejected_total and the other counters)",
        "refused 100",
    ]


def test_a_quiet_period_says_nothing_was_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = LimitedLog(logging.getLogger("test.quiet"), burst=3, period=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "test.quiet"):
        limited.warning("one")
        now[0] = 120.0
        limited.warning("two")
    assert [r.getMessage() for r in caplog.records] == ["one", "two"]
