"""Durations as people write them (`250ms`, `1s`, `1.5`, `2m`), parsed into seconds."""

from __future__ import annotations

import math
import re
from typing import Any

HINT = "must be a duration such as 250ms, 1s, 1.5 or 2m"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}
# digits with an optional fraction, then an optional unit; no sign, no exponent: a
# negative or 1e9 duration is a typo, not a wish
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?")
_LONGEST = 7 * 24 * 3600.0  # a week: anything longer is a mistake, and keeps floats sane


def parse_duration(value: Any) -> float:
    """Seconds from a number or a text duration; ValueError (with HINT) when it is not one."""
    if isinstance(value, bool):  # YAML's `yes` is not one second
        raise ValueError(HINT)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and len(value) <= 32:
        match = _DURATION.fullmatch(value.strip().lower())
        if match is None:
            raise ValueError(HINT)
        seconds = float(match.group(1)) * _UNITS[match.group(2) or ""]
    else:
        raise ValueError(HINT)
    if not math.isfinite(seconds) or seconds < 0 or seconds > _LONGEST:
        raise ValueError(HINT)
    return seconds


def positive_duration(value: Any) -> float:
    """As parse_duration, and above zero (a staleness limit of 0 s would fail every check)."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be a duration above zero, such as 250ms, 1s, 1.5 or 2m")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest of `250ms`, `1s`, `1.5s` for a reason line."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"
