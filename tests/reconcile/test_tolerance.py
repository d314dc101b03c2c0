"""The matching tolerance's one syntax, as the command line and the API take it."""

from __future__ import annotations

import pytest

from app.reconcile.tolerance import parse_tolerance

ACCEPTED = {
    "2s": 2.0,
    "500ms": 0.5,
    "1.5": 1.5,
    "1m": 60.0,
    "0": 0.0,
    " 3s ": 3.0,
    "60m": 3600.0,
    "1e-3s": 0.001,
    2: 2.0,
    0.25: 0.25,
}
REFUSED = [
    "-1s",
    "-0.5",
    "abc",
    "",
    "s",
    "2h",
    "nan",
    "inf",
    "1e400",
    "61m",
    3601,
    -1,
    True,
    None,
    {},
    [],
]


@pytest.mark.parametrize("given", ACCEPTED)
def test_accepted(given: str | float) -> None:
    assert parse_tolerance(given) == pytest.approx(ACCEPTED[given])


@pytest.mark.parametrize("given", REFUSED, ids=repr)
def test_refused(given: object) -> None:
    with pytest.raises(ValueError, match=r"duration|tolerance"):
        parse_tolerance(given)
