"""Reconciliation as a pure function: every status, the gap, determinism, symmetry."""

from __future__ import annotations

import random
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from app.reconcile.matching import COMPARED, LegView, Status, classify
from tests.reconcile.generator import Scenario, generate

TOLERANCE = 2_000_000


def compared(**values: object) -> tuple[object, ...]:
    """The compared values of a view, from MN field names (what a name leaves out is None)."""
    return tuple(values.get(f.name) for f in COMPARED)


def us(moment: datetime | None) -> int | None:
    return None if moment is None else round(moment.timestamp() * 1_000_000)


def syslog_views(s: Scenario) -> list[LegView]:
    views = []
    for c in s.calls:
        if c.kind == "mn_only":
            continue
        failed = c.kind == "failed"
        state = {"backplane": "excluded", "failed": "failed", "open": "open"}.get(c.kind, "closed")
        start = None if failed else us(c.start)
        end = None if failed else us(c.end)
        duration = None if start is None or end is None else (end - start) // 1_000_000
        views.append(
            LegView(
                c.pid,
                c.call_id,
                c.conference,
                (c.alias.lower(),),
                c.protocol,
                "in",
                start,
                end,
                duration,
                c.node,
                state,
                compared(
                    call_uuid=c.call_id,
                    conference_name=c.conference,
                    display_name=c.alias,
                    remote_alias=c.alias,
                    protocol=c.protocol,
                    call_direction="in",
                    disconnect_reason=None if end is None else "Call disconnected",
                ),
            )
        )
    return views


def parse_mn(text: object) -> int | None:
    if text is None:
        return None
    return us(datetime.fromisoformat(f"{text}+00:00"))


def mn_views(s: Scenario) -> list[LegView]:
    return [
        LegView(
            str(r["id"]),
            r["call_uuid"],
            r["conference_name"],  # type: ignore[arg-type]
            (str(r["remote_alias"]).lower(),),
            r["protocol"],
            "in",  # type: ignore[arg-type]
            parse_mn(r["start_time"]),
            parse_mn(r["end_time"]),
            r["duration"],  # type: ignore[arg-type]
            compared=compared(**r),
        )
        for r in s.mn_records
    ]


def run(s: Scenario, cdrs: list[LegView] | None = None, mn: list[LegView] | None = None):  # type: ignore[no-untyped-def]
    records = mn_views(s) if mn is None else mn
    oldest = min(r.start_us for r in records if r.start_us is not None)
    return classify(
        syslog_views(s) if cdrs is None else cdrs,
        records,
        tolerance_us=TOLERANCE,
        retention_from_us=oldest,
        history_as_of_us=us(s.as_of),
        window=(us(s.window[0]), us(s.window[1])),  # type: ignore[arg-type]
    )


def statuses(outcome) -> dict[str, str]:  # type: ignore[no-untyped-def]
    found = {}
    for item in outcome.items:
        key = item.cdr.id if item.cdr is not None else item.mn.id
        assert key not in found
        found[key] = item.status.value
    return found


SCENARIO = generate(seed=7)


def test_every_record_gets_exactly_the_expected_status() -> None:
    outcome = run(SCENARIO)
    assert statuses(outcome) == SCENARIO.expected
    assert sum(outcome.counts.values()) == len(outcome.items)
    kinds = {item.matched_by for item in outcome.items if item.status is Status.MATCHED}
    assert kinds == {"id", "call_uuid", "heuristic"}
    # Every status but `unconfirmed`, which the run gives (it knows what the history read).
    assert outcome.counts[Status.UNCONFIRMED.value] == 0
    assert all(outcome.counts[s.value] > 0 for s in Status if s is not Status.UNCONFIRMED)


def test_the_restore_gap_is_found_to_the_nearest_record() -> None:
    outcome = run(SCENARIO)
    [gap] = outcome.gaps
    lost_ends = sorted(
        us(c.end)
        for c in SCENARIO.calls
        if c.pid in SCENARIO.lost  # type: ignore[misc]
    )
    assert gap.count == len(SCENARIO.lost) > 10
    assert (gap.from_us, gap.until_us) == (lost_ends[0], lost_ends[-1])
    assert gap.before_us is not None and gap.before_us < us(SCENARIO.backup)  # type: ignore[operator]
    assert gap.after_us is not None and gap.after_us >= us(SCENARIO.restore)  # type: ignore[operator]


def test_mismatches_name_the_fields_with_both_values() -> None:
    outcome = run(SCENARIO)
    mismatched = [i for i in outcome.items if i.status is Status.MISMATCHED]
    assert mismatched
    for item in mismatched:
        assert item.differences is not None
        assert set(item.differences) == {"end_time", "duration"}
        duration = item.differences["duration"]
        assert duration["mn"] == duration["syslog"] + 45  # type: ignore[operator]


@settings(max_examples=15, deadline=None)
@given(st.randoms(use_true_random=False))
def test_reconciliation_is_deterministic_and_order_independent(shuffle: random.Random) -> None:
    cdrs, mn = syslog_views(SCENARIO), mn_views(SCENARIO)
    shuffle.shuffle(cdrs)
    shuffle.shuffle(mn)
    assert run(SCENARIO, cdrs, mn) == run(SCENARIO)


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_taking_a_record_away_moves_it_between_the_missing_sides(data: st.DataObject) -> None:
    outcome = run(SCENARIO)
    base = statuses(outcome)
    oldest = min(r.start_us for r in mn_views(SCENARIO) if r.start_us is not None)
    by_id = sorted(
        item.cdr.id
        for item in outcome.items
        if item.status is Status.MATCHED
        and item.matched_by == "id"
        and item.mn is not None
        and item.mn.start_us != oldest  # the oldest record sets the retention bound
    )
    key = data.draw(st.sampled_from(by_id))
    mn = [r for r in mn_views(SCENARIO) if r.id != key]
    cdrs = [c for c in syslog_views(SCENARIO) if c.id != key]
    without_mn = statuses(run(SCENARIO, mn=mn))
    without_syslog = statuses(run(SCENARIO, cdrs=cdrs))
    assert without_mn[key] == "missing_in_mn"
    assert without_syslog[key] == "missing_in_syslog"
    # Nothing else changes status.
    others = {k: v for k, v in base.items() if k != key}
    assert {k: v for k, v in without_mn.items() if k != key} == others
    assert {k: v for k, v in without_syslog.items() if k != key} == others


def test_a_lone_leg_that_ended_after_the_history_is_not_lost() -> None:
    """Past the history's "as of" (less the tolerance, the clocks' slack) a leg the MN does
    not hold may simply not be in its history yet."""
    as_of = 1_800_000_000_000_000

    def leg(name: str, start: int, end: int | None) -> LegView:
        duration = None if end is None else (end - start) // 1_000_000
        return LegView(
            name, None, "room", (name,), "SIP", "in", start, end, duration, "n", "closed"
        )

    legs = [
        leg("ended-before", as_of - 600_000_000, as_of - TOLERANCE - 1),
        leg("ended-within-tolerance", as_of - 600_000_000, as_of - TOLERANCE + 1),
        leg("ended-after", as_of - 600_000_000, as_of + 60_000_000),
        leg("no-end-started-after", as_of + 1, None),
    ]
    outcome = classify(
        legs, [], tolerance_us=TOLERANCE, retention_from_us=0, history_as_of_us=as_of
    )
    assert statuses(outcome) == {
        "ended-before": "missing_in_mn",
        "ended-within-tolerance": "after_history",
        "ended-after": "after_history",
        "no-end-started-after": "after_history",
    }
    unbounded = classify(legs, [], tolerance_us=TOLERANCE, retention_from_us=0)
    assert set(statuses(unbounded).values()) == {"missing_in_mn"}
    assert [gap.count for gap in outcome.gaps] == [1]  # after_history is no evidence of a loss
