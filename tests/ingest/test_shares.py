"""Senders' shares of the queue (app/ingest/shares.py), as plain data."""

from __future__ import annotations

from random import Random

from hypothesis import given
from hypothesis import strategies as st

from app.ingest.origin import Origin
from app.ingest.shares import ACTIVE, MAX_SENDERS, Shares

FLOOD = Origin("udp", "10.0.0.66", 514)
NODE = Origin("tls", "10.0.1.11", 40001)


def test_a_sender_alone_is_never_over_its_share() -> None:
    shares = Shares()
    shares.add(FLOOD, 10_000, 1_000_000, now=0.0)
    assert not shares.over_half(FLOOD, now=0.0, messages=1, size=100)


def test_past_half_beside_an_active_sender() -> None:
    shares = Shares()
    shares.add(NODE, 10, 1_000, now=0.0)
    shares.add(FLOOD, 10, 1_000, now=0.0)
    assert not shares.over_half(FLOOD, now=0.0)  # exactly half
    assert shares.over_half(FLOOD, now=0.0, messages=1, size=100)
    # In bytes too: 10 huge frames beside 30 lines are over half of the queue.
    shares.add(FLOOD, 20, 2_000, now=0.0)
    assert not shares.over_half(NODE, now=0.0, messages=1, size=100)
    assert shares.over_half(NODE, now=0.0, messages=1, size=10_000)


def test_a_sender_whose_messages_are_stored_still_counts_while_active() -> None:
    shares = Shares()
    shares.add(NODE, 1, 100, now=0.0)
    shares.remove(NODE, 1, 100)
    shares.add(FLOOD, 1_000, 100_000, now=1.0)
    assert shares.over_half(FLOOD, now=ACTIVE - 0.1)
    # The node fell silent: the flood is alone, as a node's own burst would be.
    assert not shares.over_half(FLOOD, now=ACTIVE + 1.0)


def test_udp_ports_of_one_host_are_one_sender_and_connections_are_not() -> None:
    shares = Shares()
    for port in range(100):
        shares.add(Origin("udp", "10.0.0.66", port), 1, 100, now=0.0)
    assert shares.active() == 1
    shares.add(Origin("tcp", "10.0.0.66", 1), 1, 100, now=0.0)
    shares.add(Origin("tcp", "10.0.0.66", 2), 1, 100, now=0.0)
    assert shares.active() == 3


def test_forged_hosts_are_remembered_up_to_a_bound() -> None:
    shares = Shares()
    for host in range(MAX_SENDERS + 500):
        shares.add(Origin("udp", f"10.{host >> 16}.{(host >> 8) & 255}.{host & 255}"), 1, 1, 0.0)
    assert shares.active() <= MAX_SENDERS


@given(
    st.lists(
        st.tuples(st.sampled_from([FLOOD, NODE, Origin("tcp", "h", 3)]), st.integers(1, 50)),
        max_size=60,
    ),
    st.randoms(),
)
def test_the_queue_is_the_sum_of_what_was_added_and_not_removed(
    events: list[tuple[Origin, int]], order: Random
) -> None:
    shares = Shares()
    for origin, count in events:
        shares.add(origin, count, count * 10, now=0.0)
    total = sum(count for _, count in events)
    assert shares.queued() == (total, total * 10)
    order.shuffle(events)  # commits come in any order across senders
    for origin, count in events:
        shares.remove(origin, count, count * 10)
        total -= count
        assert shares.queued() == (total, total * 10)
