"""Human durations for grant lifetimes: ``30d``, ``12h``, ``45m``, ``1d12h``, or plain seconds.

Deliberately small: whole numbers, units s/m/h/d/w, no months or years (their length varies, and
an expiry must be unambiguous).
"""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d{1,9})([wdhms])")
_WHOLE = re.compile(r"(?:\d{1,9}[wdhms])+")
_MAX = timedelta(days=36600)


def parse_duration(text: str) -> timedelta:
    """Parse ``30d``, ``12h``, ``1d12h`` or ``3600`` (seconds) into a positive timedelta.

    Raises:
        ValueError: the text is not such a duration, is zero, or exceeds 100 years.
    """
    value = text.strip().lower()
    if value.isdigit() and len(value) <= 12:  # noqa: PLR2004 - bounds the int() below
        seconds = int(value)
    elif _WHOLE.fullmatch(value):
        seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    else:
        raise ValueError(
            f"{text!r} is not a duration: write a whole number with a unit, "
            "e.g. 30d, 12h, 45m, 1d12h (w=weeks, d=days, h=hours, m=minutes, s=seconds)"
        )
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    if seconds > _MAX.total_seconds():
        raise ValueError(f"{text!r} is longer than 100 years")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Write a timedelta in the shortest form `parse_duration` reads back (whole seconds)."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in _UNITS.items():
        if unit == "w":
            continue  # days read better than weeks in listings
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
