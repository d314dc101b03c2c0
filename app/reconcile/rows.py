"""Reconciliation straight from result rows: the pairs that settle themselves.

Nearly every CDR of a window has an MN record of the same id that agrees with it. Building
two LegViews and an Item for each such pair was most of a large run's time, so they are
settled here from the rows alone; only the rest become LegViews for `classify`. Pure.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from parsers.mn_record import (
    COMPARED_COLUMN,
    COMPARED_FIELDS,
    PARTICIPANT_FIELDS,
    Compare,
    compared_values,
)

from .matching import LegView

# Both sides are read as one row layout: these columns, in this order; a syslog CDR's row
# goes on with its node and state. The values `compare` looks at come as the one text both
# tables keep of them (COMPARED): two identical texts are identical values, so the pairs
# that agree, nearly all of them, are settled without decoding it. The protocol and the
# conference name are read on their own as well, as every pair needs them.
LEG_COLUMNS = (
    "id",
    COMPARED_COLUMN,
    "protocol",
    "conference_name",
    *(f.column for f in PARTICIPANT_FIELDS if f.spec.compare in (Compare.TIME, Compare.DURATION)),
)
ID, COMPARED, PROTOCOL, CONFERENCE, START, END, DURATION = range(7)
NODE, STATE = len(LEG_COLUMNS), len(LEG_COLUMNS) + 1
# Where the values `leg_view` needs sit in a COMPARED text.
_CALL_UUID, _DIRECTION, _DISPLAY, _REMOTE = (
    [f.name for f in COMPARED_FIELDS].index(name)
    for name in ("call_uuid", "call_direction", "display_name", "remote_alias")
)

Row = tuple[Any, ...]

# Conference names, protocols, directions, nodes and states repeat across a million rows:
# one shared string each keeps a large window's memory down.
_intern = sys.intern


def _shared(value: str | None) -> str | None:
    return None if value is None else _intern(value)


def _aliases(display: str | None, remote: str | None) -> tuple[str, ...]:
    first = display.strip().lower() if display else ""
    second = remote.strip().lower() if remote else ""
    if first and second and first != second:
        return (first, second)
    return (first or second,) if first or second else ()


def leg_view(row: Row) -> LegView:
    """The LegView of a row of either side (an MN row has no node and no state)."""
    values = compared_values(row[COMPARED])
    return LegView(
        id=row[ID],
        call_uuid=values[_CALL_UUID],  # type: ignore[arg-type]
        conference_name=_shared(row[CONFERENCE]),
        aliases=_aliases(values[_DISPLAY], values[_REMOTE]),  # type: ignore[arg-type]
        protocol=_shared(row[PROTOCOL]),
        call_direction=_shared(values[_DIRECTION]),  # type: ignore[arg-type]
        start_us=row[START],
        end_us=row[END],
        duration=row[DURATION],
        node=_shared(row[NODE]) if len(row) > NODE else None,
        state=_shared(row[STATE]) if len(row) > STATE else None,
        compared=values,
    )


# Syslog states that keep a pair from being a plain match (open, or not billable).
_UNSETTLED_STATES = frozenset(("open", "failed", "excluded"))


def _alike(ours: Row, theirs: Row) -> bool:
    """Whether each value is the same on both sides or missing on one (None or "")."""
    return all(
        a == b or a is None or b is None or a == "" or b == ""
        for a, b in zip(ours, theirs, strict=True)
    )


def _backplane(protocol: str | None) -> bool:
    return protocol is not None and protocol.upper() == "BACKPLANE"


def agree(cdr: Row, mn: Row, tolerance_us: int) -> bool:
    """True only when `classify` would find this pair, matched by id, `matched` with no
    differences: both billable, the CDR closed, times within the tolerance, the duration
    within its slack, and every other compared value the same or known to one side only.
    A False is no verdict: such a pair goes through `classify` like any other."""
    start, mn_start = cdr[START], mn[START]
    if start is None or mn_start is None or abs(start - mn_start) > tolerance_us:
        return False
    if cdr[STATE] in _UNSETTLED_STATES or _backplane(cdr[PROTOCOL]) or _backplane(mn[PROTOCOL]):
        return False
    values, mn_values = cdr[COMPARED], mn[COMPARED]
    if values != mn_values and not _alike(compared_values(values), compared_values(mn_values)):
        return False
    end, mn_end = cdr[END], mn[END]
    if end is None or mn_end is None:
        if end is not None or mn_end is not None:
            return False
    elif abs(end - mn_end) > tolerance_us:
        return False
    duration: int | None = cdr[DURATION]
    mn_duration: int | None = mn[DURATION]
    if duration is None or mn_duration is None:
        return duration is None and mn_duration is None
    # The same slack as `compare`: the MN floors the duration.
    return abs(duration - mn_duration) <= 1 + tolerance_us // 1_000_000


def split_agreeing(
    cdrs: Sequence[Row], records: Sequence[Row], tolerance_us: int
) -> tuple[list[tuple[Row, Row]], list[Row], list[Row]]:
    """(CDR, MN record) pairs of the same id that agree, and the rest of each side in its
    given order. Matching takes pairs of the same id first, so what the rest match among
    themselves is exactly what they would have matched with these pairs still there."""
    by_id = {record[ID]: record for record in records}
    agreed: list[tuple[Row, Row]] = []
    rest: list[Row] = []
    for cdr in cdrs:
        mn = by_id.get(cdr[ID])
        if mn is not None and agree(cdr, mn, tolerance_us):
            agreed.append((cdr, mn))
            del by_id[cdr[ID]]
        else:
            rest.append(cdr)
    return agreed, rest, [record for record in records if record[ID] in by_id]
