"""Matches syslog legs to MN records and gives each exactly one status: pure.

Keys, in order: Participant-id = MN `id`; then Call-id = `call_uuid`; then conference name,
an alias and the start time within the tolerance. Matched pairs are compared field by field;
what is left over is missing on one side, unless it is not billable (backplanes, failed
attempts), still open, or older than anything the MN still holds (its retention).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from parsers.mn_record import COMPARED_FIELDS, PARTICIPANT_FIELDS, Compare


class Status(StrEnum):
    """The one status of each CDR and MN record in a run."""

    MATCHED = "matched"
    MISSING_IN_MN = "missing_in_mn"  # lost by the MN: recover it
    MISSING_IN_SYSLOG = "missing_in_syslog"
    MISMATCHED = "mismatched"
    OUTSIDE_RETENTION = "outside_retention"
    AFTER_HISTORY = "after_history"  # ended after the MN history's "as of": not yet known
    # Not on the MN as far as the stored history shows, but no read as fresh as the newest
    # "as of" covered its end (an incremental pull): the MN may have written it late.
    UNCONFIRMED = "unconfirmed"
    OPEN = "open"
    EXCLUDED = "excluded"


# Not frozen: a run builds two million of these, and a frozen dataclass's __init__ (one
# object.__setattr__ per field) was a sixth of a large run's time. Treat them as read-only.
@dataclass(slots=True, eq=True)
class LegView:
    """The fields reconciliation uses, the same for a syslog CDR and an MN record."""

    id: str
    call_uuid: str | None
    conference_name: str | None
    aliases: tuple[str, ...]  # lower-cased names the participant goes by
    protocol: str | None
    call_direction: str | None
    start_us: int | None
    end_us: int | None
    duration: int | None
    node: str | None = None
    state: str | None = None  # syslog legs: open, closed, failed, excluded
    compared: tuple[Any, ...] = ()  # the values of COMPARED, in its order

    @property
    def time_us(self) -> int | None:
        """Where the record sits in time: its start, else its end."""
        return self.start_us if self.start_us is not None else self.end_us

    @property
    def not_billable(self) -> bool:
        """Backplanes and failed attempts (no start): kept, but never recovered."""
        if (self.protocol or "").upper() == "BACKPLANE":
            return True
        return self.state in ("failed", "excluded") or self.start_us is None


@dataclass(slots=True, eq=True)  # not frozen, like LegView
class Item:
    """The outcome for one CDR, one MN record, or one matched pair."""

    status: Status
    cdr: LegView | None
    mn: LegView | None
    matched_by: str | None = None
    differences: dict[str, dict[str, object]] | None = None

    @property
    def time_us(self) -> int | None:
        """The item's time: the syslog side's when there is one."""
        leg = self.cdr or self.mn
        assert leg is not None
        return leg.time_us

    @property
    def write_us(self) -> int | None:
        """When the MN would have written the record: at the call's end."""
        leg = self.cdr or self.mn
        assert leg is not None
        return leg.end_us if leg.end_us is not None else leg.time_us


@dataclass(frozen=True, slots=True)
class Gap:
    """A run of records the MN lost, in the order it writes them (call end)."""

    from_us: int
    until_us: int
    count: int
    nodes: frozenset[str]
    before_us: int | None  # the last record the MN kept before the run
    after_us: int | None  # the first record the MN kept after it


@dataclass(slots=True)
class Outcome:
    """Every item of a run, its counts and its gaps."""

    items: list[Item]
    counts: dict[str, int] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)


def _key(leg: LegView) -> tuple[int, str]:
    return (leg.time_us if leg.time_us is not None else -1, leg.id)


def _pair_key(item: Item) -> tuple[int, str, str]:
    time = item.time_us
    return (
        time if time is not None else -1,
        item.cdr.id if item.cdr else "",
        item.mn.id if item.mn else "",
    )


# The fields a matched pair is compared on besides its times, in declaration order:
# `LegView.compared` holds their values. Then the times, which LegView has by name.
COMPARED = COMPARED_FIELDS
_VALUE_RULES = tuple((f.name, f.spec.compare) for f in COMPARED)
_TIME_RULES = tuple(
    (f.name, f.column, f.spec.compare)
    for f in PARTICIPANT_FIELDS
    if f.spec.compare in (Compare.TIME, Compare.DURATION)
)


def _name(value: str) -> str:
    return value.strip().lower()


def differs(rule: Compare | None, ours: Any, theirs: Any, tolerance_us: int) -> bool:
    """Whether two values of one field tell different facts, by the field's rule. For
    `Compare.NAME` this compares the two values only; `compare` also tries the other
    side's other names."""
    if rule is Compare.TIME or rule is Compare.DURATION:
        if ours is None or theirs is None:
            return ours is not theirs
        # The MN floors the duration; with start and end each off by a little, one second
        # either way is the same call.
        slack = tolerance_us if rule is Compare.TIME else 1 + tolerance_us // 1_000_000
        return bool(abs(ours - theirs) > slack)
    if ours is None or theirs is None or ours == "" or theirs == "" or ours == theirs:
        return False
    if rule is Compare.CASELESS:
        return bool(ours.lower() != theirs.lower())
    if rule is Compare.NAME:
        return _name(ours) != _name(theirs)
    return True


def compare(cdr: LegView, mn: LegView, tolerance_us: int) -> dict[str, dict[str, object]]:
    """The fields that differ between a matched pair, with both values (times in µs)."""
    differences: dict[str, dict[str, object]] = {}
    for (name, rule), ours, theirs in zip(_VALUE_RULES, cdr.compared, mn.compared, strict=False):
        if differs(rule, ours, theirs, tolerance_us) and not (
            # A name of one side that is any name of the other is the same participant.
            rule is Compare.NAME and (_name(ours) in mn.aliases or _name(theirs) in cdr.aliases)
        ):
            differences[name] = {"syslog": ours, "mn": theirs}
    for name, attribute, rule in _TIME_RULES:
        ours, theirs = getattr(cdr, attribute), getattr(mn, attribute)
        if differs(rule, ours, theirs, tolerance_us):
            differences[name] = {"syslog": ours, "mn": theirs}
    return differences


def match(
    cdrs: Sequence[LegView], records: Sequence[LegView], tolerance_us: int
) -> tuple[list[tuple[LegView, LegView, str]], list[LegView], list[LegView]]:
    """Pairs (syslog, MN, key), and what is left unmatched on each side."""
    pairs: list[tuple[LegView, LegView, str]] = []
    by_id = {r.id: r for r in records}
    taken: set[str] = set()
    rest: list[LegView] = []
    for cdr in sorted(cdrs, key=_key):
        mn = by_id.get(cdr.id)
        if mn is not None and mn.id not in taken:
            pairs.append((cdr, mn, "id"))
            taken.add(mn.id)
        else:
            rest.append(cdr)

    def nearest(cdr: LegView, candidates: list[LegView]) -> LegView | None:
        best: LegView | None = None
        for candidate in candidates:
            if candidate.id in taken:
                continue
            if cdr.start_us is None or candidate.start_us is None:
                if best is None:
                    best = candidate
                continue
            distance = abs(candidate.start_us - cdr.start_us)
            if distance <= tolerance_us and (
                best is None
                or best.start_us is None
                or distance < abs(best.start_us - cdr.start_us)
            ):
                best = candidate
        return best

    # Index only what the unmatched legs can ask for: most records matched by id.
    wanted_calls = {cdr.call_uuid for cdr in rest if cdr.call_uuid}
    by_call: dict[str, list[LegView]] = defaultdict(list)
    for record in records:
        if record.call_uuid in wanted_calls and record.id not in taken:
            by_call[record.call_uuid].append(record)
    unmatched: list[LegView] = []
    for cdr in rest:
        mn = nearest(cdr, by_call.get(cdr.call_uuid, [])) if cdr.call_uuid else None
        if mn is not None:
            pairs.append((cdr, mn, "call_uuid"))
            taken.add(mn.id)
        else:
            unmatched.append(cdr)

    # Last resort: same conference and alias, start within the tolerance.
    wanted_places = {
        (cdr.conference_name.lower(), alias)
        for cdr in unmatched
        if cdr.conference_name
        for alias in cdr.aliases
    }
    by_place: dict[tuple[str, str], list[LegView]] = defaultdict(list)
    for record in records:
        if record.id in taken or record.start_us is None or not record.conference_name:
            continue
        for alias in record.aliases:
            place = (record.conference_name.lower(), alias)
            if place in wanted_places:
                by_place[place].append(record)
    for candidates_at_place in by_place.values():
        candidates_at_place.sort(key=lambda r: r.start_us or 0)
    left: list[LegView] = []
    for cdr in unmatched:
        found: LegView | None = None
        if cdr.start_us is not None and cdr.conference_name:
            for alias in sorted(cdr.aliases):
                candidates = by_place.get((cdr.conference_name.lower(), alias), [])
                starts = [c.start_us or 0 for c in candidates]
                low = bisect_left(starts, cdr.start_us - tolerance_us)
                window = [
                    c for c in candidates[low:] if (c.start_us or 0) <= cdr.start_us + tolerance_us
                ]
                found = nearest(cdr, window)
                if found is not None:
                    break
        if found is not None:
            pairs.append((cdr, found, "heuristic"))
            taken.add(found.id)
        else:
            left.append(cdr)
    return pairs, left, [r for r in records if r.id not in taken]


def classify(
    cdrs: Sequence[LegView],
    records: Sequence[LegView],
    *,
    tolerance_us: int,
    retention_from_us: int | None,
    history_as_of_us: int | None = None,
    window: tuple[int, int] | None = None,
    with_gaps: bool = True,
) -> Outcome:
    """Give every CDR and MN record exactly one status, and find the restore gaps.

    A lone CDR that ended after `history_as_of_us` (less the tolerance: the clocks may differ
    by that) is `after_history`: the MN may have written it after its history was taken.

    `records` may reach past the window (so that edge records still match); MN records
    outside `window` that matched nothing are left out of the run.
    """
    pairs, lone_cdrs, lone_records = match(cdrs, records, tolerance_us)
    items: list[Item] = []
    for cdr, mn, key in pairs:
        if cdr.not_billable or mn.not_billable:
            items.append(Item(Status.EXCLUDED, cdr, mn, key))
        elif cdr.state == "open":
            items.append(Item(Status.OPEN, cdr, mn, key))
        else:
            differences = compare(cdr, mn, tolerance_us)
            status = Status.MISMATCHED if differences else Status.MATCHED
            items.append(Item(status, cdr, mn, key, differences or None))
    for cdr in lone_cdrs:
        if cdr.not_billable:
            status = Status.EXCLUDED
        elif cdr.state == "open":
            status = Status.OPEN
        elif retention_from_us is not None and (cdr.time_us or 0) < retention_from_us:
            status = Status.OUTSIDE_RETENTION
        elif history_as_of_us is not None and _ended_after(cdr, history_as_of_us - tolerance_us):
            status = Status.AFTER_HISTORY
        else:
            status = Status.MISSING_IN_MN
        items.append(Item(status, cdr, None))
    for mn in lone_records:
        if window is not None and not (
            mn.time_us is not None and window[0] <= mn.time_us < window[1]
        ):
            continue
        status = Status.EXCLUDED if mn.not_billable else Status.MISSING_IN_SYSLOG
        items.append(Item(status, None, mn))
    items.sort(key=_pair_key)
    counts = {status.value: 0 for status in Status}
    for item in items:
        counts[item.status.value] += 1
    return Outcome(items, counts, find_gaps(items) if with_gaps else [])


def _ended_after(leg: LegView, moment_us: int) -> bool:
    """True when the leg ended (or, with no end, started) after `moment_us`."""
    end = leg.end_us if leg.end_us is not None else leg.time_us
    return end is not None and end > moment_us


# What gap detection keeps of an item: (write time, tie-breaker, lost?, node).
GapEntry = tuple[int, str, bool, str | None]

_KEPT = (Status.MATCHED, Status.MISMATCHED, Status.MISSING_IN_SYSLOG)


def gap_entries(items: Iterable[Item]) -> list[GapEntry]:
    """The items that tell where the MN lost records: the lost ones and the kept ones."""
    entries: list[GapEntry] = []
    for item in items:
        lost = item.status is Status.MISSING_IN_MN
        if lost or item.status in _KEPT:
            _, cdr_id, mn_id = _pair_key(item)
            node = item.cdr.node if item.cdr is not None else None
            entries.append((item.write_us or 0, f"{cdr_id}/{mn_id}", lost, node))
    return entries


def find_gaps(items: Iterable[Item]) -> list[Gap]:
    """Runs of records the MN lost, in its write order (call end), each bounded by the
    records it kept around it. A restore loses every record written between the backup
    and the restore, so on a clean restore there is one gap and it spans exactly that."""
    return gaps_in(gap_entries(items))


def gaps_in(entries: list[GapEntry]) -> list[Gap]:
    """The gaps among gap entries, in any order (see find_gaps)."""
    entries.sort()
    gaps: list[Gap] = []
    run: list[GapEntry] = []
    before: int | None = None
    for entry in entries:
        if entry[2]:
            run.append(entry)
            continue
        if run:
            gaps.append(_gap(run, before, entry[0]))
            run = []
        before = entry[0]
    if run:
        gaps.append(_gap(run, before, None))
    return gaps


def _gap(run: list[GapEntry], before: int | None, after: int | None) -> Gap:
    nodes = frozenset(node for _, _, _, node in run if node)
    return Gap(run[0][0], run[-1][0], len(run), nodes, before, after)
