"""Who is on a planted call: the identities a CDR and its MN record share."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from bench.frames import (
    CONFERENCES,
    DISCONNECT_DETAILS,
    DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    LOCATIONS,
    NODES,
    PROTOCOLS,
    VENDORS,
)


@dataclass(frozen=True, slots=True)
class Person:
    """Who is on a call: the values a CDR and its MN record share besides the times."""

    id: str
    call_uuid: str
    conversation_id: str
    conference: str
    display_name: str
    local_alias: str
    remote_alias: str
    protocol: str
    direction: str
    role: str
    remote_address: str
    remote_port: int
    node: int
    media_node: int
    location: str
    vendor: str
    reason: str


def person(rng: random.Random) -> Person:
    """Random but realistic call identities, as in bench/frames.py."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    protocol = rng.choice(PROTOCOLS)
    scheme = "h323" if protocol == "H323" else "sip"
    user = f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"
    remote = f"10.{rng.randrange(2, 250)}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"
    conference = rng.choice(CONFERENCES)
    node = rng.randrange(len(NODES))
    return Person(
        id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        call_uuid=f"{uuid.UUID(int=rng.getrandbits(128)).hex}@{remote}",
        conversation_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        conference=conference,
        display_name=f"{first} {last}",
        local_alias=f"meet.{conference.lower().replace(' ', '.')}@example.com",
        remote_alias=f"{scheme}:{user}",
        protocol=protocol,
        direction=rng.choice(("in", "in", "in", "out")),
        role=rng.choice(("chair", "guest")),
        remote_address=remote,
        remote_port=rng.choice((5060, 5061, 1720, 443, rng.randrange(40000, 60000))),
        node=node,
        media_node=(node + rng.randrange(0, 3)) % len(NODES),
        location=rng.choice(LOCATIONS),
        vendor=rng.choice(VENDORS),
        reason=rng.choice(DISCONNECT_DETAILS),
    )
