"""When the watch alerts: which window to judge, and whether a gap is new, grown or known: pure.

A gap is a stretch of the MN's write order (call end) where it lacks records; successive
runs over a sliding window see the same gap again, often with more records (the MN is still
down, or more of the gap has settled). An alert is one gap's identity across runs: a gap
belongs to an alert when they share a record, or when no kept record separates them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """What an alert is about."""

    GAP = "gap"  # records syslog saw that a reconciliation found missing on the MN
    RESTORE = "restore"  # records the MN held at an earlier pull and no longer returns


class State(StrEnum):
    """An alert is open until its records are exported or someone acknowledges it."""

    OPEN = "open"
    CLEARED = "cleared"


# Who clears an alert when no person does: billing has its records, or the MN wrote them
# after all (late: exporting them now would bill them twice).
EXPORTED = "exported"
FOUND = "found on the MN"


@dataclass(frozen=True, slots=True)
class LostRecord:
    """One record of a gap: its id, when the MN would have written it, and its node."""

    id: str
    write_us: int
    node: str | None = None


@dataclass(frozen=True, slots=True)
class SeenGap:
    """A gap as one run (or one restore check) saw it: its records and the kept records
    either side (None: nothing kept on that side within what was looked at)."""

    records: tuple[LostRecord, ...]
    before_us: int | None = None
    after_us: int | None = None
    # The write times the run looked at, [from, until): where no kept record was seen on a
    # side, the gap may reach as far as the window did.
    window: tuple[int, int] | None = None

    @property
    def region(self) -> tuple[int, int]:
        """The closed stretch of write times the gap may cover without passing a kept record
        this run saw."""
        low = self.before_us + 1 if self.before_us is not None else self.from_us
        high = self.after_us - 1 if self.after_us is not None else self.until_us
        if self.window is not None:
            if self.before_us is None:
                low = min(low, self.window[0])
            if self.after_us is None:
                high = max(high, self.window[1])
        return min(low, self.from_us), max(high, self.until_us)

    @property
    def from_us(self) -> int:
        """The first lost record's write time."""
        return min(r.write_us for r in self.records)

    @property
    def until_us(self) -> int:
        """The last lost record's write time."""
        return max(r.write_us for r in self.records)


@dataclass(frozen=True, slots=True)
class Alert:
    """What the policy needs of a stored alert."""

    id: int
    state: State
    record_ids: frozenset[str]
    from_us: int
    until_us: int
    before_us: int | None = None
    after_us: int | None = None
    region: tuple[int, int] | None = None  # see SeenGap.region; None: the records' span


@dataclass(frozen=True, slots=True)
class Fire:
    """A gap no alert knows: open one."""

    gap: SeenGap


@dataclass(frozen=True, slots=True)
class Grow:
    """A known gap with records its alert lacks: add them (and reopen a cleared alert)."""

    alert_id: int
    added: tuple[LostRecord, ...]
    from_us: int
    until_us: int
    before_us: int | None
    after_us: int | None
    region: tuple[int, int]


Decision = Fire | Grow


def settled_window(as_of_us: int | None, settle_us: int, window_us: int) -> tuple[int, int] | None:
    """The window [from, until) a watch run judges: legs that ended more than `settle_us`
    before the history's "as of", over the `window_us` before that; None without history."""
    if as_of_us is None:
        return None
    until_us = as_of_us - settle_us
    return until_us - window_us, until_us


def _region(alert: Alert) -> tuple[int, int]:
    return alert.region if alert.region is not None else (alert.from_us, alert.until_us)


def _same_gap(alert: Alert, gap: SeenGap, ids: frozenset[str]) -> bool:
    if alert.record_ids & ids:
        return True
    (a_low, a_high), (g_low, g_high) = _region(alert), gap.region
    return max(a_low, g_low) <= min(a_high, g_high)


def decide(alerts: Sequence[Alert], gaps: Iterable[SeenGap]) -> list[Decision]:
    """What to do about each gap a run saw, given the alerts stored (open and cleared).

    A gap no alert knows fires a new alert. A gap that belongs to an alert (the oldest open
    one it belongs to, else the oldest cleared one) grows it by the records no alert holds
    yet, if any: a cleared alert whose gap grows is reopened, since the new records are
    neither exported nor acknowledged. A gap whose records every alert already holds
    changes nothing: the alert fires once per gap.
    """
    known = frozenset().union(*(a.record_ids for a in alerts))
    ordered = sorted(alerts, key=lambda a: (a.state is not State.OPEN, a.id))
    decisions: list[Decision] = []
    for gap in gaps:
        if not gap.records:
            continue
        ids = frozenset(r.id for r in gap.records)
        owner = next((a for a in ordered if _same_gap(a, gap, ids)), None)
        if owner is None:
            decisions.append(Fire(gap))
            continue
        added = tuple(sorted((r for r in gap.records if r.id not in known), key=_order))
        if not added:
            continue
        low, high = min(owner.from_us, gap.from_us), max(owner.until_us, gap.until_us)
        # The nearest kept record outside the grown gap bounds it on each side; one side's
        # run may have seen none (it slid out of the window) where the other did.
        before = max(
            (b for b in (owner.before_us, gap.before_us) if b is not None and b < low), default=None
        )
        after = min(
            (a for a in (owner.after_us, gap.after_us) if a is not None and a > high), default=None
        )
        region = _region(owner)
        reach = (min(region[0], gap.region[0]), max(region[1], gap.region[1]))
        # A kept record either side bounds the region, whatever an older run guessed.
        reach = (
            reach[0] if before is None else max(reach[0], before + 1),
            reach[1] if after is None else min(reach[1], after - 1),
        )
        decisions.append(Grow(owner.id, added, low, high, before, after, reach))
    return decisions


def _order(record: LostRecord) -> tuple[int, str]:
    return (record.write_us, record.id)


def exported(record_ids: Iterable[str], exported_ids: Iterable[str]) -> bool:
    """Whether every record of an alert is in an export batch: the alert clears."""
    wanted = set(record_ids)
    return bool(wanted) and wanted <= set(exported_ids)


def gap_records(
    gaps: Sequence[tuple[int, int, int | None, int | None]],
    lost: Iterable[LostRecord],
    window: tuple[int, int] | None = None,
) -> list[SeenGap]:
    """The lost records of a run over `window` sorted into its gaps, given as (from, until,
    before, after) write times; a record outside every gap is left out (the run did not call
    it a gap)."""
    buckets: list[list[LostRecord]] = [[] for _ in gaps]
    for record in sorted(lost, key=_order):
        for index, (low, high, _, _) in enumerate(gaps):
            if low <= record.write_us <= high:
                buckets[index].append(record)
                break
    return [
        SeenGap(tuple(records), before, after, window)
        for records, (_, _, before, after) in zip(buckets, gaps, strict=True)
        if records
    ]
