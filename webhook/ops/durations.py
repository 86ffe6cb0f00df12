"""How long a hold lasts: ``--for 20s|15m|2h|1d`` (or a sum, ``1h30m``) and ``--until TIME``."""

from __future__ import annotations

import datetime as dt
import re

from webhook.templating.rollout_annotations import parse_time

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+)([smhd])")
_WHOLE = re.compile(r"(?:\d+[smhd])+")


def parse_duration(text: str) -> dt.timedelta:
    """Raises ValueError naming the accepted forms."""
    value = text.strip().lower()
    if not _WHOLE.fullmatch(value):
        raise ValueError(f"invalid duration {text!r}: expected a number and a unit (s, m, h, d), e.g. 20s, 15m, 2h, 1d")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be longer than zero")
    if seconds > 3650 * 86400:
        raise ValueError(f"invalid duration {text!r}: longer than ten years; hold without --for instead")
    return dt.timedelta(seconds=seconds)


def parse_until(text: str, now: dt.datetime) -> dt.datetime:
    """An RFC 3339 time in the future."""
    try:
        when = parse_time(text)
    except ValueError as exc:
        raise ValueError(f"invalid time {text!r}: expected RFC 3339, e.g. 2026-05-01T18:00:00Z") from exc
    if when <= now:
        raise ValueError(f"--until {text} is not in the future")
    return when
