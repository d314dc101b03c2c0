"""The matching tolerance: one syntax and one range, for the command line and the API."""

from __future__ import annotations

import math

MAX_SECONDS = 3600.0
# Longest suffix first: `ms` also ends in `s`.
_UNITS = (("ms", 0.001), ("s", 1.0), ("m", 60.0))


def parse_tolerance(value: object) -> float:
    """Seconds, from `2s`, `500ms`, `1m` or a number of seconds (a JSON number too);
    ValueError for anything else, a negative value, or more than an hour."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r} (try 2s or 500ms)")
    else:
        text, scale = value.strip(), 1.0
        for suffix, unit in _UNITS:
            if text.endswith(suffix):
                text, scale = text[: -len(suffix)], unit
                break
        try:
            seconds = float(text) * scale
        except ValueError:
            raise ValueError(f"not a duration: {value!r} (try 2s or 500ms)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"the tolerance must be zero or more seconds, not {value!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"the tolerance must be at most {MAX_SECONDS:g} seconds, not {value!r}")
    return seconds
