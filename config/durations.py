"""Durations as people write them in a config file: "90m", "24h", "1d12h", "45s"."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_EXAMPLES = 'a duration like "90m", "24h", "1d12h" or "45s"'


def parse_duration(text: object) -> timedelta:
    """Days, hours, minutes, seconds in that order, each at most once; more than zero."""
    if isinstance(text, timedelta):
        return text
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or not any(match.groups()):
        raise ValueError(f"must be {_EXAMPLES}")
    seconds = sum(int(n) * s for n, s in zip(match.groups(), _UNITS.values(), strict=True) if n)
    if seconds == 0:
        raise ValueError("must be longer than zero")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration, in the largest units: 36 hours is "1d12h"."""
    rest = int(value.total_seconds())
    parts = []
    for unit, seconds in _UNITS.items():
        count, rest = divmod(rest, seconds)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
