"""Durations as people write them: "30m", "1h15m", "1.5h", "90 minutes", "1h 20m", "2 hours"."""

from __future__ import annotations

import re

_UNIT_SECONDS = {
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(hours|hour|hrs|hr|h|minutes|minute|mins|min|m|seconds|second|secs|sec|s)(?![a-z])", re.I)


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> int:
    """Seconds in `text`; raises DurationError with an example of what works."""
    s = text.strip().lower()
    if not s:
        raise DurationError("empty duration; write it like 30m, 1h15m or 1.5h")
    if re.fullmatch(r"\d+(\.\d+)?", s):
        raise DurationError(f"duration {text!r} has no unit; write {s}m or {s}h")
    pos, total, found = 0, 0.0, False
    for m in _PART.finditer(s):
        if s[pos:m.start()].strip(" ,and"):
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()]
        pos, found = m.end(), True
    if not found or s[pos:].strip():
        raise DurationError(f"cannot read duration {text!r}; write it like 30m, 1h15m or 1.5h")
    if total <= 0:
        raise DurationError(f"duration {text!r} is not positive")
    return int(round(total))


def format_duration(seconds: float, *, style: str = "short") -> str:
    """1h 20m (short) or "1 hour 20 min" (long). Whole minutes; under a minute shows seconds."""
    seconds = int(round(seconds))
    if seconds < 60 and seconds:
        return f"{seconds}s"
    minutes = (seconds + 30) // 60
    h, m = divmod(minutes, 60)
    if style == "long":
        parts = []
        if h:
            parts.append(f"{h} hour{'s' if h != 1 else ''}")
        if m or not h:
            parts.append(f"{m} min")
        return " ".join(parts)
    if h and m:
        return f"{h}h {m}m"
    if h:
        return f"{h}h"
    return f"{m}m"


def format_hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f}h"
