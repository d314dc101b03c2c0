"""The MN participant record's declaration: what the tables, the leg and the export rely on."""

from __future__ import annotations

from dataclasses import fields

from parsers.mn_record import (
    EXPORT_FIELDS,
    PARTICIPANT_FIELDS,
    Compare,
    Kind,
    MNParticipant,
)


def test_every_typed_field_of_the_record_is_declared_in_class_order() -> None:
    typed = [f.name for f in fields(MNParticipant) if f.name != "raw"]
    assert [f.name for f in PARTICIPANT_FIELDS] == typed
    assert PARTICIPANT_FIELDS[0].name == "id"


def test_what_a_cdr_holds_the_mn_table_stores_and_the_export_carries() -> None:
    for item in PARTICIPANT_FIELDS:
        if item.spec.cdr:
            assert item.spec.stored and item.spec.export, item.name
    assert set(EXPORT_FIELDS) >= {f.name for f in PARTICIPANT_FIELDS if f.spec.cdr}


def test_times_are_stored_as_microsecond_columns() -> None:
    columns = {f.name: f.column for f in PARTICIPANT_FIELDS if f.spec.kind is Kind.TIME}
    assert columns == {"start_time": "start_us", "end_time": "end_us"}
    assert all(f.column == f.name for f in PARTICIPANT_FIELDS if f.spec.kind is not Kind.TIME)


def test_syslog_keys_are_lower_case_and_only_on_fields_a_cdr_holds() -> None:
    for item in PARTICIPANT_FIELDS:
        assert all(key == key.lower() for key in item.spec.syslog), item.name
        if item.spec.syslog:
            assert item.spec.cdr, item.name


def test_exactly_the_fields_both_sides_hold_are_compared_but_the_id() -> None:
    compared = {f.name for f in PARTICIPANT_FIELDS if f.spec.compare is not None}
    both = {f.name for f in PARTICIPANT_FIELDS if f.spec.cdr and f.spec.stored}
    assert compared == both - {"id"}
    for item in PARTICIPANT_FIELDS:
        if item.spec.compare in (Compare.TIME, Compare.DURATION):
            assert item.spec.kind in (Kind.TIME, Kind.INTEGER), item.name
        elif item.spec.compare in (Compare.CASELESS, Compare.NAME):
            assert item.spec.kind is Kind.TEXT, item.name
