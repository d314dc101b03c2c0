"""The watch's policy: which window it judges, and when a gap fires, grows or is known."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.watch.policy import (
    Alert,
    Fire,
    Grow,
    LostRecord,
    SeenGap,
    State,
    decide,
    exported,
    gap_records,
    settled_window,
)


def gap(
    *times: int,
    before: int | None = None,
    after: int | None = None,
    window: tuple[int, int] | None = None,
) -> SeenGap:
    records = tuple(LostRecord(f"r{t}", t, "node-1") for t in times)
    return SeenGap(records, before, after, window)


def alert_of(alert_id: int, seen: SeenGap, state: State = State.OPEN) -> Alert:
    return Alert(
        alert_id,
        state,
        frozenset(r.id for r in seen.records),
        seen.from_us,
        seen.until_us,
        seen.before_us,
        seen.after_us,
        seen.region,
    )


def test_the_settled_window_ends_the_settle_time_before_the_as_of() -> None:
    assert settled_window(10_000, 1_000, 5_000) == (4_000, 9_000)
    assert settled_window(None, 1_000, 5_000) is None


def test_a_gap_no_alert_knows_fires() -> None:
    seen = gap(10, 20, before=5, after=30)
    assert decide([], [seen]) == [Fire(seen)]


def test_the_same_gap_seen_again_changes_nothing() -> None:
    seen = gap(10, 20, before=5, after=30)
    assert decide([alert_of(1, seen)], [seen]) == []
    # Also when the alert was cleared (acknowledged or exported): it fires once per gap.
    assert decide([alert_of(1, seen, State.CLEARED)], [seen]) == []


def test_a_gap_that_grows_grows_its_alert_with_the_new_records_only() -> None:
    first = gap(10, 20, before=5)
    grown = gap(10, 20, 25, 40, before=5, after=50)
    [decision] = decide([alert_of(7, first)], [grown])
    assert decision == Grow(
        7,
        (LostRecord("r25", 25, "node-1"), LostRecord("r40", 40, "node-1")),
        10,
        40,
        5,
        50,
        (6, 49),
    )


def test_a_gap_whose_old_records_slid_out_of_the_window_is_still_the_same_gap() -> None:
    # The alert ended at the window's end (no kept record after it); the next run's window
    # no longer reaches its records, but no kept record separates the two.
    first = gap(10, 20, before=5, window=(0, 25))
    later = gap(30, 40, after=50, window=(22, 60))
    [decision] = decide([alert_of(3, first)], [later])
    assert isinstance(decision, Grow) and decision.alert_id == 3
    assert (decision.from_us, decision.until_us, decision.before_us, decision.after_us) == (
        10,
        40,
        5,
        50,
    )
    assert decision.region == (6, 49)
    # Windows that do not meet leave it unknown whether a kept record lies between: two.
    apart = gap(30, 40, after=50, window=(27, 60))
    assert decide([alert_of(3, first)], [apart]) == [Fire(apart)]


def test_a_kept_record_between_two_gaps_makes_them_two_alerts() -> None:
    first = gap(10, 20, before=5, after=25)
    second = gap(30, 40, before=25, after=50)
    assert decide([alert_of(1, first)], [second]) == [Fire(second)]


def test_a_cleared_alert_whose_gap_grows_is_grown_and_so_reopened() -> None:
    first = gap(10, 20, before=5)
    grown = gap(10, 20, 30, before=5)
    [decision] = decide([alert_of(2, first, State.CLEARED)], [grown])
    assert isinstance(decision, Grow) and [r.id for r in decision.added] == ["r30"]


def test_an_open_alert_is_preferred_to_a_cleared_one() -> None:
    old = alert_of(1, gap(10, before=5), State.CLEARED)
    current = alert_of(2, gap(12, before=5))
    [decision] = decide([old, current], [gap(10, 12, 14, before=5)])
    assert isinstance(decision, Grow) and decision.alert_id == 2


def test_an_alert_clears_once_every_record_is_exported() -> None:
    assert exported({"a", "b"}, {"a", "b", "c"})
    assert not exported({"a", "b"}, {"a"})
    assert not exported(set(), {"a"})


def test_lost_records_are_sorted_into_the_runs_gaps() -> None:
    lost = [LostRecord(f"r{t}", t) for t in (3, 11, 12, 30, 99)]
    found = gap_records([(10, 12, 5, 20), (30, 30, 20, None)], lost)
    assert [[r.id for r in g.records] for g in found] == [["r11", "r12"], ["r30"]]
    assert [(g.before_us, g.after_us) for g in found] == [(5, 20), (20, None)]


@st.composite
def timelines(draw: st.DrawFn) -> list[bool]:
    """A stretch of the MN's write order: True where a record is lost."""
    return draw(st.lists(st.booleans(), min_size=1, max_size=40))


def gaps_of(lost: list[bool], low: int, high: int) -> list[SeenGap]:
    """The gaps a run over positions [low, high) of the timeline sees."""
    found: list[SeenGap] = []
    run: list[int] = []
    before: int | None = None
    for position in range(low, high):
        if lost[position]:
            run.append(position)
            continue
        if run:
            found.append(gap(*run, before=before, after=position, window=(low, high)))
            run = []
        before = position
    if run:
        found.append(gap(*run, before=before, window=(low, high)))
    return found


@given(timelines(), st.integers(0, 10), st.integers(1, 5))
def test_sliding_runs_fire_each_gap_once_and_every_lost_record_lands_in_one_alert(
    lost: list[bool], overlap: int, step: int
) -> None:
    """However a window slides over a timeline (each run overlapping the one before, as
    the watch's do), every lost record ends up in exactly one alert, each gap's records
    in one alert, and an alert never holds records a kept record separates."""
    window = step + overlap
    alerts: dict[int, Alert] = {}
    records: dict[int, set[int]] = {}
    for end in range(step, len(lost) + step, step):
        end = min(end, len(lost))
        seen = gaps_of(lost, max(0, end - window), end)
        for decision in decide(list(alerts.values()), seen):
            if isinstance(decision, Fire):
                new_id = len(alerts) + 1
                alerts[new_id] = alert_of(new_id, decision.gap)
                records[new_id] = {r.write_us for r in decision.gap.records}
            else:
                old = alerts[decision.alert_id]
                ids = old.record_ids | {r.id for r in decision.added}
                alerts[old.id] = Alert(
                    old.id,
                    State.OPEN,
                    ids,
                    decision.from_us,
                    decision.until_us,
                    decision.before_us,
                    decision.after_us,
                    decision.region,
                )
                records[old.id] |= {r.write_us for r in decision.added}
    every = [position for sets in records.values() for position in sets]
    assert sorted(every) == [p for p, is_lost in enumerate(lost) if is_lost]
    # Each gap (a maximal run of lost positions) is one alert, and no alert spans a kept one.
    truth = [frozenset(g.record_ids) for g in (alert_of(0, s) for s in gaps_of(lost, 0, len(lost)))]
    assert sorted(map(sorted, truth)) == sorted(
        sorted(f"r{p}" for p in held) for held in records.values()
    )
