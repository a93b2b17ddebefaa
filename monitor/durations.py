"""Pure: the duration (`1h30m`) and size (`10MiB`) syntax shared by config values and CLI flags."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"(?:\d+[smhdw])+")
_GROUP = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Longer spans would push "now +/- duration" past the calendar's end; SPEC's 36500d fits.
MAX_DURATION_DAYS = 100_000
MAX_DURATION_SECONDS = MAX_DURATION_DAYS * 86400
_SIZE = re.compile(r"(\d+)(B|KiB|MiB)")
_UNIT_BYTES = {"B": 1, "KiB": 1024, "MiB": 1024 * 1024}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `1h30m`, `36500d` -> timedelta; ValueError with a sentence otherwise."""
    if not isinstance(text, str) or not _DURATION.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a duration; write <integer><unit> groups with units s m h d w, "
            'e.g. "90s", "15m", "1h30m"'
        )
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _GROUP.findall(text))
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r} is too long a duration; at most {MAX_DURATION_DAYS}d")
    return timedelta(seconds=seconds)


def parse_size(text: str) -> int:
    """`10MiB` -> bytes; ValueError with a sentence otherwise."""
    match = _SIZE.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a size; write <integer><unit> with unit B, KiB or MiB")
    return int(match.group(1)) * _UNIT_BYTES[match.group(2)]
