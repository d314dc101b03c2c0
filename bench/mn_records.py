"""The Management Node's participant records as the benchmarks plant them.

The one place in bench/ that names the MN record's fields (the `mn_participants` columns and
their values), so that it can follow the product's own declaration of the record.
"""

from __future__ import annotations

from typing import Any

from bench.frames import NODES
from bench.people import Person

MN_COLUMNS = (
    "id",
    "call_uuid",
    "conversation_id",
    "conference_id",
    "conference_name",
    "display_name",
    "local_alias",
    "remote_alias",
    "protocol",
    "call_direction",
    "role",
    "disconnect_reason",
    "remote_address",
    "remote_port",
    "signalling_node",
    "media_node",
    "proxy_node",
    "system_location",
    "service_type",
    "service_tag",
    "call_tag",
    "vendor",
    "has_media",
    "start_us",
    "end_us",
    "duration",
    "record",
    "source",
    "imported_us",
)


def mn_row(
    who: Person, start: int, end: int, duration_offset: int, imported_us: int
) -> tuple[Any, ...]:
    """A `mn_participants` row, in MN_COLUMNS order."""
    return (
        who.id,
        who.call_uuid,
        who.conversation_id,
        None,
        who.conference,
        who.display_name,
        who.local_alias,
        who.remote_alias,
        who.protocol,
        who.direction,
        who.role,
        who.reason,
        who.remote_address,
        who.remote_port,
        NODES[who.node],
        NODES[who.media_node],
        None,
        who.location,
        "conference",
        "vmr-standard",
        None,
        who.vendor,
        who.protocol != "API",
        start,
        end,
        (end - start) // 1_000_000 + duration_offset,
        "{}",
        "bench",
        imported_us,
    )
