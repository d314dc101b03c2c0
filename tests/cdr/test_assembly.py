"""Leg assembly: states, durations, MN field names, and independence from arrival order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.cdr.assembly import LegEvent, LegState, assemble_leg
from app.cdr.conferences import group_instances

S = 1_000_000


def event(message: str, at: float, **fields: str) -> LegEvent:
    return LegEvent(
        round(at * S), message, "conf-a", {k.replace("_", "-"): v for k, v in fields.items()}
    )


JOIN, LEAVE, ATTEMPT = (
    "Participant has joined.",
    "Participant has disconnected.",
    "Participant attempting to join conference.",
)
CALL = [
    event(ATTEMPT, 99.5, participant="Alice", protocol="SIP", conferencealias="meet"),
    event(
        JOIN,
        100.250,
        participant="Alice",
        protocol="SIP",
        call_id="c1",
        conference="Sync",
        direction="in",
        remote_address="10.0.0.5",
        remote_port="5060",
        signaling_node="10.0.1.11",
        media_node="10.0.1.12",
        location="London",
        vendor="Cisco",
        service_type="conference",
        role="chair",
    ),
    event(LEAVE, 1278.999, participant="Alice", protocol="SIP", detail="Call disconnected"),
]


def test_a_joined_and_disconnected_leg_is_closed_with_mn_fields() -> None:
    leg = assemble_leg("p1", CALL)
    assert leg.state is LegState.CLOSED
    assert (leg.start_us, leg.end_us) == (100_250_000, 1_278_999_000)
    assert leg.duration == 1178  # floored, as the MN does
    assert leg.disconnect_reason == "Call disconnected"
    assert (
        leg.value("call_uuid"),
        leg.value("conference_name"),
        leg.value("protocol"),
        leg.value("call_direction"),
    ) == (
        "c1",
        "Sync",
        "SIP",
        "in",
    )
    assert (
        leg.value("signalling_node"),
        leg.value("media_node"),
        leg.value("system_location"),
    ) == (
        "10.0.1.11",
        "10.0.1.12",
        "London",
    )
    assert (
        leg.value("remote_address"),
        leg.value("remote_port"),
        leg.value("vendor"),
        leg.value("role"),
    ) == (
        "10.0.0.5",
        5060,
        "Cisco",
        "chair",
    )
    assert leg.value("local_alias") == "meet"  # the dialled alias, from the attempt
    assert leg.value("display_name") == "Alice"
    assert leg.first_seen_us == 99_500_000
    assert leg.event_count == 3


def test_states() -> None:
    assert assemble_leg("p", CALL[:2]).state is LegState.OPEN
    assert assemble_leg("p", CALL[:1]).state is LegState.FAILED
    failed = assemble_leg("p", [CALL[0], CALL[2]])  # disconnected without ever joining
    assert failed.state is LegState.FAILED and failed.duration is None
    backplane = [event(JOIN, 1, protocol="BACKPLANE"), event(LEAVE, 5, protocol="BACKPLANE")]
    assert assemble_leg("p", backplane).state is LegState.EXCLUDED


def test_a_disconnect_logged_before_the_join_never_gives_a_negative_duration() -> None:
    skewed = [event(JOIN, 10.5), event(LEAVE, 10.2)]
    assert assemble_leg("p", skewed).duration == 0


@given(st.permutations(CALL))
def test_assembly_does_not_depend_on_arrival_order(events: list[LegEvent]) -> None:
    assert assemble_leg("p1", events) == assemble_leg("p1", CALL)


def test_conference_instances_span_all_nodes_and_split_on_gaps() -> None:
    legs = [
        {"conference_name": "A", "start_us": 0, "end_us": 100, "node": "n1"},
        {"conference_name": "A", "start_us": 50, "end_us": 300, "node": "n2"},
        {"conference_name": "A", "start_us": 400, "end_us": None, "node": "n1"},
        {"conference_name": "A", "start_us": 500, "end_us": 600, "node": "n1"},
        {"conference_name": "B", "start_us": 10, "end_us": 20, "node": "n1"},
    ]
    instances = group_instances(legs)
    assert [(i.name, i.start_us, i.end_us, i.participant_count) for i in instances] == [
        ("A", 0, 300, 2),
        ("A", 400, None, 2),
        ("B", 10, 20, 1),
    ]
    assert instances[0].nodes == {"n1", "n2"}
