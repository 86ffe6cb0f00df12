"""Hold lengths: --for and --until."""

from __future__ import annotations

import datetime as dt

import pytest

from webhook.ops.durations import parse_duration, parse_until

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "seconds"), [("20s", 20), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), (" 2H ", 7200)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3x", "expected a number"),
        ("", "expected"),
        ("0s", "longer than zero"),
        ("h", "expected"),
        ("99999d", "ten years"),
    ],
)
def test_bad_durations_say_what_is_accepted(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


def test_until_must_be_a_future_rfc3339_time() -> None:
    assert parse_until("2026-03-01T14:00:00+01:00", NOW) == dt.datetime(2026, 3, 1, 13, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="not in the future"):
        parse_until("2026-03-01T11:00:00Z", NOW)
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_until("next tuesday", NOW)
