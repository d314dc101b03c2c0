"""What a run keeps across its slices: counts, gap entries, input bounds, classified MN ids."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .items import CDR_ID, CDR_KEY, ITEM_NODE, MN_ID, MN_KEY, MN_TIME, STATUS, WRITE_US, ItemRow
from .matching import GapEntry, Status
from .rows import END, START, Row

_LOST = Status.MISSING_IN_MN.value
# The statuses that tell where the MN lost records: the lost ones and the kept ones.
_GAP_STATUSES = frozenset(
    s.value
    for s in (Status.MISSING_IN_MN, Status.MATCHED, Status.MISMATCHED, Status.MISSING_IN_SYSLOG)
)


def _widen(bounds: tuple[int, int] | None, low: int, high: int) -> tuple[int, int]:
    return (low, high) if bounds is None else (min(bounds[0], low), max(bounds[1], high))


@dataclass(slots=True)
class Tally:
    """The running totals of a run, fed one slice of item rows at a time."""

    counts: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in Status})
    entries: list[GapEntry] = field(default_factory=list)
    classified: set[str] = field(default_factory=set)  # MN records given a status already
    cdrs: int = 0
    records: int = 0
    pairs: int = 0
    syslog_bounds: tuple[int, int] | None = None  # first and last syslog leg time
    mn_bounds: tuple[int, int] | None = None  # first and last classified MN record time

    def add_legs(self, legs: Sequence[Row]) -> None:
        """Count a slice's syslog legs (rows), and widen the bounds by their times (start,
        else end)."""
        self.cdrs += len(legs)
        times = [leg[START] for leg in legs if leg[START] is not None]
        times += [leg[END] for leg in legs if leg[START] is None and leg[END] is not None]
        if times:
            self.syslog_bounds = _widen(self.syslog_bounds, min(times), max(times))

    def add_items(self, rows: Iterable[ItemRow]) -> None:
        """Count a slice's items, keep their gap entries, and note their MN records."""
        counts, entries, classified = self.counts, self.entries, self.classified
        intern = sys.intern
        mn_times = []
        for row in rows:
            status = row[STATUS]
            counts[status] += 1
            if status in _GAP_STATUSES:
                node = row[ITEM_NODE]
                entries.append(
                    (
                        row[WRITE_US] or 0,
                        f"{row[CDR_KEY]}/{row[MN_KEY]}",
                        status == _LOST,
                        None if node is None else intern(node),
                    )
                )
            mn_id = row[MN_ID]
            if mn_id is not None:
                classified.add(mn_id)
                self.records += 1
                if row[CDR_ID] is not None:
                    self.pairs += 1
                if row[MN_TIME] is not None:
                    mn_times.append(row[MN_TIME])
        if mn_times:
            self.mn_bounds = _widen(self.mn_bounds, min(mn_times), max(mn_times))
