"""Groups participant legs into conference instances: pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ConferenceInstance:
    """One run of a conference: from its first join to its last leave, over all nodes."""

    name: str
    start_us: int
    end_us: int | None  # None while any leg is still open
    participant_count: int = 0
    nodes: set[str] = field(default_factory=set)


def group_instances(legs: Iterable[Mapping[str, Any]]) -> list[ConferenceInstance]:
    """Instances from legs sorted by (conference_name, start_us).

    Syslog carries no conference instance id, so an instance is a maximal run of legs of one
    conference name whose calls overlap: a leg that starts after every earlier leg of the
    name has ended begins a new instance.
    """
    instances: list[ConferenceInstance] = []
    current: ConferenceInstance | None = None
    for leg in legs:
        name, start, end = leg["conference_name"], int(leg["start_us"]), leg["end_us"]
        if (
            current is None
            or current.name != name
            or (current.end_us is not None and start > current.end_us)
        ):
            current = ConferenceInstance(name, start, end)
            instances.append(current)
        elif end is None or current.end_us is None:
            current.end_us = None  # an open leg keeps its instance open
        else:
            current.end_us = max(current.end_us, end)
        current.participant_count += 1
        if leg.get("node"):
            current.nodes.add(str(leg["node"]))
    return instances
