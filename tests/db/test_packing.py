"""The raw-message codec: any bytes come back as they went in, never larger, and the
dictionary rows were packed with stays what it was."""

from __future__ import annotations

import hashlib
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.db import packing
from app.db.packing import CURRENT, DICTIONARIES, PLAIN, Unreadable, pack, unpack
from tests.cdr.scenario import LINES

# Version 1 as it was first stored: a row packed with it must unpack with it for ever, so
# the file may never change (a new dictionary is a new version).
FROZEN = {1: "5e950e2d15ebd326426e61b516c7df7d32a2a4d4ee54a2baa1de63fe94d7888d"}


@given(st.binary(max_size=4096))
def test_any_bytes_come_back_as_they_were_and_never_larger(raw: bytes) -> None:
    stored, packed = pack(raw)
    assert unpack(stored, packed) == raw
    assert len(stored) <= len(raw)
    assert packed in (PLAIN, CURRENT)
    # A plain row is the bytes themselves.
    assert packed != PLAIN or stored == raw


@given(st.lists(st.sampled_from([line.rfc5424() for line in LINES]), min_size=1), st.binary())
def test_pexip_lines_with_anything_appended_come_back(lines: list[bytes], tail: bytes) -> None:
    raw = b" ".join(lines) + tail
    assert unpack(*pack(raw)) == raw


def test_a_pexip_line_packs_to_under_half_its_size() -> None:
    for line in LINES:
        frame = line.rfc5424()
        stored, packed = pack(frame)
        assert packed == CURRENT
        assert len(stored) < len(frame) / 2


def test_an_incompressible_message_is_stored_plain() -> None:
    raw = hashlib.sha512(b"x").digest()
    assert pack(raw) == (raw, PLAIN)
    assert pack(b"") == (b"", PLAIN)


def test_a_plain_row_reads_as_itself() -> None:
    raw = LINES[0].rfc5424()
    assert unpack(raw, PLAIN) == raw


def test_an_unknown_dictionary_or_damaged_bytes_are_a_clear_error() -> None:
    stored, packed = pack(LINES[0].rfc5424())
    with pytest.raises(Unreadable, match="dictionary 99"):
        unpack(stored, 99)
    with pytest.raises(Unreadable, match="does not unpack"):
        unpack(stored[: len(stored) // 2], packed)


@pytest.mark.parametrize("version", sorted(DICTIONARIES))
def test_every_dictionary_is_the_one_rows_were_packed_with(version: int) -> None:
    data = resources.files(packing.__package__).joinpath(DICTIONARIES[version]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == FROZEN[version]
