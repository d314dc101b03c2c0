"""A planted call's rows: its CDR and the Management Node's record of it, in the product's tables.

The columns and their order come from the product's declaration of the MN record
(parsers/mn_record.py, through `app.cdr.assembly.LEG_COLUMNS` and `app.db.models`); this
module only says which value a planted call gives each column, by name. A column it gives
no value is NULL, as a call that lacks the field leaves it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from app.cdr.assembly import LEG_COLUMNS
from app.db.models import mn_participants
from bench.frames import HOSTS, NODES
from bench.people import Person, person
from parsers.mn_record import COMPARED_COLUMN, COMPARED_FIELDS, compared_text

CDR_COLUMNS = LEG_COLUMNS
MN_COLUMNS = tuple(column.name for column in mn_participants.columns)


def shared_values(who: Person, start: int, end: int) -> dict[str, Any]:
    """The values a planted CDR and its MN record share, by column."""
    return {
        "id": who.id,
        "call_uuid": who.call_uuid,
        "conversation_id": who.conversation_id,
        "conference_name": who.conference,
        "display_name": who.display_name,
        "local_alias": who.local_alias,
        "remote_alias": who.remote_alias,
        "protocol": who.protocol,
        "call_direction": who.direction,
        "role": who.role,
        "disconnect_reason": who.reason,
        "remote_address": who.remote_address,
        "remote_port": who.remote_port,
        "signalling_node": NODES[who.node],
        "media_node": NODES[who.media_node],
        "system_location": who.location,
        "service_type": "conference",
        "service_tag": "vmr-standard",
        "vendor": who.vendor,
        "start_us": start,
        "end_us": end,
        "duration": (end - start) // 1_000_000,
    }


def cdr_values(who: Person, start: int, end: int) -> dict[str, Any]:
    """A closed CDR's values, by `cdrs` column."""
    values = shared_values(who, start, end)
    values["first_seen_us"] = start - 2_000_000  # the attempt, 2 s before the join
    values["state"] = "closed"
    values["node"] = HOSTS[who.node]
    values["event_count"] = 2
    return _with_compared(values)


def mn_values(
    who: Person, start: int, end: int, duration_offset: int, imported_us: int
) -> dict[str, Any]:
    """The MN record's values, by `mn_participants` column; its duration is off by
    `duration_offset` seconds."""
    values = shared_values(who, start, end)
    values["duration"] += duration_offset
    values["has_media"] = who.protocol != "API"
    values["record"] = "{}"
    values["source"] = "bench"
    values["imported_us"] = imported_us
    return _with_compared(values)


def _with_compared(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with the text of its compared values, as the product stores it."""
    values[COMPARED_COLUMN] = compared_text([values.get(f.column) for f in COMPARED_FIELDS])
    return values


def cdr_row(
    who: Person, start: int, end: int, columns: Sequence[str] = CDR_COLUMNS
) -> tuple[Any, ...]:
    """A closed `cdrs` row, in the order of `columns` (a reference checkout's may differ)."""
    return tuple(map(cdr_values(who, start, end).get, columns))


def mn_row(
    who: Person,
    start: int,
    end: int,
    duration_offset: int,
    imported_us: int,
    columns: Sequence[str] = MN_COLUMNS,
) -> tuple[Any, ...]:
    """A `mn_participants` row, in the order of `columns`."""
    return tuple(map(mn_values(who, start, end, duration_offset, imported_us).get, columns))


def _unknown_columns() -> set[str]:
    """Values named for no column of their table: a row would drop them without a word."""
    sample = person(random.Random(0))
    return (set(cdr_values(sample, 0, 0)) - set(CDR_COLUMNS)) | (
        set(mn_values(sample, 0, 0, 0, 0)) - set(MN_COLUMNS)
    )


if _unknown := _unknown_columns():
    raise RuntimeError(f"bench/mn_records.py: no such column: {sorted(_unknown)}")
