"""Each item of a run as one flat tuple: what is stored of it, and what the run tallies.

A slice's items come from two places (pairs settled from rows, and `classify`'s Items);
one tuple shape for both lets them be sorted together and written without building an
Item for the million pairs that agree. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from app.times import iso

from .matching import Item, Status
from .rows import CONFERENCE, END, ID, NODE, START, Row

# The layout of an item row. The first three fields are `matching._pair_key`, so the rows
# sort in the same order as Items do; no two items share that key (each CDR and each MN
# record is in one item), so a sort never compares past it.
SORT_TIME, CDR_KEY, MN_KEY = 0, 1, 2
STATUS, CDR_ID, MN_ID, MATCHED_BY, TIME, CONFERENCE_NAME, ITEM_NODE, DIFFERENCES = range(3, 11)
WRITE_US, MN_TIME = 11, 12
STORED = slice(STATUS, DIFFERENCES + 1)  # the stored columns, as in ITEM_COLUMNS after seq

ItemRow = tuple[Any, ...]

ITEM_COLUMNS = (
    "run_id",
    "seq",
    "status",
    "cdr_id",
    "mn_id",
    "matched_by",
    "time_us",
    "conference_name",
    "node",
    "differences",
)

_MATCHED = Status.MATCHED.value


def differences_json(differences: dict[str, dict[str, object]] | None) -> str | None:
    """The stored differences of a pair: JSON, times as ISO 8601."""
    if not differences:
        return None
    readable = {
        name: {
            side: iso(value) if name.endswith("_time") and isinstance(value, int) else value
            for side, value in pair.items()
        }
        for name, pair in differences.items()
    }
    return json.dumps(readable)


_LOST = Status.MISSING_IN_MN.value
_UNCONFIRMED = Status.UNCONFIRMED.value


def confirmed(rows: list[ItemRow], confirms: Callable[[int | None], bool]) -> list[ItemRow]:
    """`rows` with each lost record whose write time `confirms` does not vouch for made
    `unconfirmed`: the MN history read since may lack it only because it was written late."""
    return [
        (*row[:STATUS], _UNCONFIRMED, *row[STATUS + 1 :])
        if row[STATUS] == _LOST and not confirms(row[WRITE_US])
        else row
        for row in rows
    ]


def agreed_row(cdr: Row, mn: Row) -> ItemRow:
    """The item of a pair from `rows.split_agreeing`: matched by id (both have a start)."""
    start, end = cdr[START], cdr[END]
    return (
        start,
        cdr[ID],
        mn[ID],
        _MATCHED,
        cdr[ID],
        mn[ID],
        "id",
        start,
        cdr[CONFERENCE],
        cdr[NODE],
        None,
        start if end is None else end,
        mn[START],
    )


def item_row(item: Item) -> ItemRow:
    """The row of an Item from `classify`."""
    time = item.time_us
    cdr, mn = item.cdr, item.mn
    leg = cdr or mn
    assert leg is not None
    return (
        -1 if time is None else time,
        cdr.id if cdr else "",
        mn.id if mn else "",
        item.status.value,
        cdr.id if cdr else None,
        mn.id if mn else None,
        item.matched_by,
        time,
        leg.conference_name,
        cdr.node if cdr else None,
        differences_json(item.differences),
        item.write_us,
        mn.time_us if mn else None,
    )
