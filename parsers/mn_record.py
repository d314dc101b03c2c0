"""The Management Node participant record, declared once: its fields and what each is for.

`MNParticipant` is the typed record (pexip-format.md section 6a). Each field's declaration
says its kind, its SQL column, whether a syslog CDR carries it and from which syslog keys,
whether billing's export has it (export columns follow the class order), and how
reconciliation compares it. The tables, the leg, the API schema, the export columns, the
reconciliation rows and history typing are all derived from `PARTICIPANT_FIELDS`.
`MNConference` is the conference record (section 6b), declared the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, get_type_hints

__all__ = [
    "COMPARED_COLUMN",
    "COMPARED_FIELDS",
    "CONFERENCE_FIELDS",
    "CONFERENCE_ONLY",
    "EXPORT_FIELDS",
    "INT_MAX",
    "KNOWN_FIELDS",
    "PARTICIPANT_FIELDS",
    "PARTICIPANT_ONLY",
    "TEXT_FIELDS",
    "UNTYPED_CONFERENCE_FIELDS",
    "UNTYPED_PARTICIPANT_FIELDS",
    "Compare",
    "Kind",
    "MNConference",
    "MNField",
    "MNParticipant",
    "Spec",
    "compared_text",
    "compared_values",
]

# Larger than any real count, duration or bandwidth; keeps values inside a 32-bit SQL INTEGER.
INT_MAX: Final = 2**31 - 1


class Kind(StrEnum):
    """How a field's value is typed from what the MN wrote (see parsers/history.py)."""

    TEXT = "text"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    TIME = "time"


class Compare(StrEnum):
    """How reconciliation compares a field of a matched pair (syslog CDR against MN record).

    The value rules compare only values both sides know: a field one side left empty is no
    difference. A time or duration only one side has is one. Each normalisation is
    explained in docs/design.md ("Comparing a matched pair")."""

    EXACT = "exact"  # the same value
    CASELESS = "caseless"  # the same text, ignoring case: values of a closed set
    # A name the participant goes by: the same, ignoring case and surrounding space, as one
    # of the other side's names (syslog's `Participant` is a display name or an alias).
    NAME = "name"
    TIME = "time"  # within the run's tolerance; one side without a time differs
    DURATION = "duration"  # within one second plus the tolerance; the MN floors seconds


@dataclass(frozen=True, slots=True)
class Spec:
    """What the code needs to know about one field, beside its name and Python type."""

    kind: Kind
    length: int | None = None  # the SQL column is String(length); None: Text (or the kind's)
    maximum: int = INT_MAX  # integers only
    syslog: tuple[str, ...] = ()  # the syslog keys (lower-cased) a CDR copies it from, in order
    cdr: bool = False  # the `cdrs` table (a syslog CDR) has it
    stored: bool = False  # the `mn_participants` table has it as a column
    export: bool = False  # billing's export has it, in class order
    compare: Compare | None = None
    description: str | None = None  # for the API schema


def _spec(kind: Kind, length: int | None = None, **spec: Any) -> dict[str, Spec]:
    """A field's metadata: its `Spec`."""
    return {"spec": Spec(kind, length, **spec)}


def _both(kind: Kind, length: int | None = None, **spec: Any) -> dict[str, Spec]:
    """The metadata of a field both sides have and billing's export carries: reconciliation
    compares it, exactly unless `compare` says otherwise."""
    spec.setdefault("compare", Compare.EXACT)
    return _spec(kind, length, cdr=True, stored=True, export=True, **spec)


_TEXT, _INTEGER, _BOOLEAN, _TIME = Kind.TEXT, Kind.INTEGER, Kind.BOOLEAN, Kind.TIME
_FLOORED: Final = "Whole seconds, rounded down like the MN."


@dataclass(frozen=True, slots=True)
class MNParticipant:
    """One participant history record (one call leg) as the Management Node holds it.

    Times are UTC-aware; integers are whole and non-negative (the MN floors durations)."""

    id: str = field(
        metadata=_both(
            _TEXT, 128, compare=None, description="Participant-id: the MN history `id` of the leg."
        )
    )
    call_uuid: str | None = field(default=None, metadata=_both(_TEXT, syslog=("call-id",)))
    conversation_id: str | None = field(
        default=None, metadata=_both(_TEXT, syslog=("conversation-id",))
    )
    conference_name: str | None = field(
        default=None, metadata=_both(_TEXT, syslog=("conference",), compare=Compare.CASELESS)
    )
    display_name: str | None = field(
        default=None,
        metadata=_both(
            _TEXT, syslog=("display-name", "displayname", "participant"), compare=Compare.NAME
        ),
    )
    local_alias: str | None = field(
        default=None,
        metadata=_both(_TEXT, syslog=("local-alias", "conferencealias", "destination-alias")),
    )
    remote_alias: str | None = field(
        default=None,
        metadata=_both(
            _TEXT,
            syslog=("remote-alias", "source-alias", "participant-alias", "participant"),
            compare=Compare.NAME,
        ),
    )
    protocol: str | None = field(
        default=None, metadata=_both(_TEXT, 32, syslog=("protocol",), compare=Compare.CASELESS)
    )
    call_direction: str | None = field(
        default=None,
        metadata=_both(_TEXT, 16, syslog=("direction", "call-direction"), compare=Compare.CASELESS),
    )
    role: str | None = field(
        default=None, metadata=_both(_TEXT, 32, syslog=("role",), compare=Compare.CASELESS)
    )
    start_time: datetime | None = field(  # None for failed calls
        default=None,
        metadata=_both(_TIME, compare=Compare.TIME, description="`Participant has joined.`, UTC."),
    )
    end_time: datetime | None = field(
        default=None,
        metadata=_both(_TIME, compare=Compare.TIME, description="`Participant has disconnected.`"),
    )
    duration: int | None = field(
        default=None,
        metadata=_both(_INTEGER, compare=Compare.DURATION, description=_FLOORED),
    )
    # A CDR takes it from the last disconnect's `detail` (app/cdr/assembly.py).
    disconnect_reason: str | None = field(default=None, metadata=_both(_TEXT))
    remote_address: str | None = field(
        default=None, metadata=_both(_TEXT, 255, syslog=("remote-address",))
    )
    remote_port: int | None = field(
        default=None, metadata=_both(_INTEGER, maximum=65535, syslog=("remote-port",))
    )
    # Pexip spells "Signaling" with one l in logs and "signalling" with two in history.
    signalling_node: str | None = field(
        default=None, metadata=_both(_TEXT, 255, syslog=("signaling-node", "signalling-node"))
    )
    media_node: str | None = field(default=None, metadata=_both(_TEXT, 255, syslog=("media-node",)))
    proxy_node: str | None = field(default=None, metadata=_both(_TEXT, 255, syslog=("proxy-node",)))
    system_location: str | None = field(
        default=None,
        metadata=_both(_TEXT, syslog=("location", "system-location", "signaling-location")),
    )
    service_type: str | None = field(
        default=None, metadata=_both(_TEXT, 64, syslog=("service-type",), compare=Compare.CASELESS)
    )
    service_tag: str | None = field(default=None, metadata=_both(_TEXT, syslog=("service-tag",)))
    vendor: str | None = field(default=None, metadata=_both(_TEXT, syslog=("vendor",)))
    # A CDR's export derives it from the protocol (app/export/formats.py).
    has_media: bool | None = field(default=None, metadata=_spec(_BOOLEAN, stored=True, export=True))
    # The URI "/api/admin/history/v1/conference/<uuid>/", and its <uuid>.
    conference: str | None = field(default=None, metadata=_spec(_TEXT))
    conference_id: str | None = field(default=None, metadata=_spec(_TEXT, 128, stored=True))
    call_tag: str | None = field(default=None, metadata=_spec(_TEXT, stored=True))
    encryption: str | None = field(default=None, metadata=_spec(_TEXT))
    call_quality: str | None = field(default=None, metadata=_spec(_TEXT))
    bandwidth: int | None = field(default=None, metadata=_spec(_INTEGER))
    rx_bandwidth: int | None = field(default=None, metadata=_spec(_INTEGER))
    tx_bandwidth: int | None = field(default=None, metadata=_spec(_INTEGER))
    license_count: int | None = field(default=None, metadata=_spec(_INTEGER))
    license_type: str | None = field(default=None, metadata=_spec(_TEXT))
    # Every field as received (after CSV artefact clean-up), typed ones included: a read-only
    # view of a shallow copy. Not hashed; compared.
    raw: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, hash=False
    )


@dataclass(frozen=True, slots=True)
class MNConference:
    """One conference history record (one conference instance) as the Management Node holds it."""

    id: str = field(metadata=_spec(_TEXT, 128))
    name: str | None = field(default=None, metadata=_spec(_TEXT))
    start_time: datetime | None = field(default=None, metadata=_spec(_TIME))
    end_time: datetime | None = field(default=None, metadata=_spec(_TIME))
    duration: int | None = field(
        default=None, metadata=_spec(_INTEGER)
    )  # whole seconds, as the MN gave them
    participant_count: int | None = field(
        default=None, metadata=_spec(_INTEGER)
    )  # calls, not people: a reconnect counts twice
    service_type: str | None = field(default=None, metadata=_spec(_TEXT, 64))
    tag: str | None = field(default=None, metadata=_spec(_TEXT))
    raw: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, hash=False
    )


# Fields the MN writes that are kept only in `raw`: lists, call-quality series, flags nothing
# reads. With the typed ones they are how a CSV header or a record is recognised.
UNTYPED_PARTICIPANT_FIELDS: Final = {
    "resource_uri": _TEXT,
    "av_id": _TEXT,
    "bucketed_call_quality": None,
    "historic_call_quality": None,
    "idp_uuid": _TEXT,
    "is_direct": None,
    "is_idp_authenticated": None,
    "is_streaming": None,
    "media_streams": None,
    "parent_id": _TEXT,
    "presentation_id": _TEXT,
    "transcoding_enabled": None,
}
UNTYPED_CONFERENCE_FIELDS: Final = {
    "resource_uri": _TEXT,
    "direct_media_available": None,
    "instant_message_count": None,
    "participants": None,
}


@dataclass(frozen=True, slots=True)
class MNField:
    """One declared field: its name (the MN's, also the export's), column and `Spec`."""

    name: str
    python_type: Any  # as annotated on the record class, e.g. `str | None`
    column: str  # in the tables: times are integer microseconds, `<x>_us` for `<x>_time`
    spec: Spec


def _declared(record: type) -> tuple[MNField, ...]:
    types = get_type_hints(record)
    declared = []
    for item in fields(record):
        if "spec" not in item.metadata:
            continue  # raw
        spec: Spec = item.metadata["spec"]
        column = item.name.removesuffix("_time") + "_us" if spec.kind is Kind.TIME else item.name
        declared.append(MNField(item.name, types[item.name], column, spec))
    return tuple(declared)


PARTICIPANT_FIELDS: Final = _declared(MNParticipant)
CONFERENCE_FIELDS: Final = _declared(MNConference)
EXPORT_FIELDS: Final = tuple(f.name for f in PARTICIPANT_FIELDS if f.spec.export)

_PARTICIPANT_KINDS: Final = {
    **{f.name: f.spec.kind for f in PARTICIPANT_FIELDS},
    **UNTYPED_PARTICIPANT_FIELDS,
}
_CONFERENCE_KINDS: Final = {
    **{f.name: f.spec.kind for f in CONFERENCE_FIELDS},
    **UNTYPED_CONFERENCE_FIELDS,
}
# The MN's field names: what tells the two kinds of record apart, and a CSV header from others.
PARTICIPANT_ONLY: Final = frozenset(_PARTICIPANT_KINDS) - frozenset(_CONFERENCE_KINDS)
CONFERENCE_ONLY: Final = frozenset(_CONFERENCE_KINDS) - frozenset(_PARTICIPANT_KINDS)
KNOWN_FIELDS: Final = frozenset(_PARTICIPANT_KINDS) | frozenset(_CONFERENCE_KINDS)
# Fields whose values are text: a CSV cell "True" in one of them is a name, not a boolean.
TEXT_FIELDS: Final = frozenset(
    name
    for kinds in (_PARTICIPANT_KINDS, _CONFERENCE_KINDS)
    for name, kind in kinds.items()
    if kind in (Kind.TEXT, Kind.TIME)
)

# The fields reconciliation compares by value (all but times and durations), in declaration
# order. Both tables keep their values once more as one text (`compared_text`), in column
# COMPARED_COLUMN: a large reconciliation reads that one value per row instead of one per
# field, and two identical texts settle a pair's values without decoding them.
COMPARED_FIELDS: Final = tuple(
    f
    for f in PARTICIPANT_FIELDS
    if f.spec.compare is not None and f.spec.compare not in (Compare.TIME, Compare.DURATION)
)
COMPARED_COLUMN: Final = "compared"
_COMPARED_JSON: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def compared_text(values: Sequence[str | int | None]) -> str:
    """The stored text of a row's COMPARED_FIELDS values, in that order (a JSON array): equal
    texts are equal values, and `compared_values` gives them back."""
    return _COMPARED_JSON.encode(list(values))


def compared_values(text: str) -> tuple[str | int | None, ...]:
    """The values a `compared_text` holds."""
    return tuple(json.loads(text))
