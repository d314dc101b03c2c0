"""Warnings a hostile peer can repeat at will (refused connections, failed handshakes), logged
at a bounded rate so that a flood of them costs neither the disk nor the event loop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

# A burst is enough to see who and why; the counters in /metrics have every occurrence.
BURST = 10
PERIOD = 60.0


class LimitedLog:
    """One kind of warning: at most `burst` records per `period` seconds; the first record
    after a period in which some were left out says how many."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = BURST,
        period: float = PERIOD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._period = period
        self._clock = clock
        self._started = clock()
        self._logged = 0
        self._left_out = 0

    def warning(self, message: str, *args: object) -> None:
        """Log `message % args` at WARNING unless this period's burst is spent."""
        now = self._clock()
        if now - self._started >= self._period:
            if self._left_out:
                self._logger.warning(
                    "%d more like the next were not logged in the last %.0fs "
                    "(see cdrecon_connections_rejected_total and the other counters)",
                    self._left_out,
                    now - self._started,
                )
            self._started, self._logged, self._left_out = now, 0, 0
        if self._logged < self._burst:
            self._logged += 1
            self._logger.warning(message, *args)
        else:
            self._left_out += 1
