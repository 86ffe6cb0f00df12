"""The hold and history annotations: exact formats, tolerant parsing, bounded history."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from webhook.templating.rollout_annotations import (
    MAX_ENTRIES_PER_FIELD,
    MAX_HISTORY_BYTES,
    Entry,
    Hold,
    append_history,
    dump_history,
    dump_hold,
    format_time,
    parse_history,
    parse_hold,
    parse_time,
)

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_a_hold_round_trips_in_the_documented_shape() -> None:
    hold = Hold(
        "bad canary", since="2026-03-01T12:00:00Z", until="2026-03-01T14:00:00Z", by="alice", versions={"/a": "3"}
    )
    text = dump_hold(hold)
    assert orjson.loads(text) == {
        "reason": "bad canary",
        "until": "2026-03-01T14:00:00Z",
        "since": "2026-03-01T12:00:00Z",
        "by": "alice",
        "versions": {"/a": "3"},
    }
    assert text == dump_hold(hold) and list(orjson.loads(text)) == sorted(orjson.loads(text))
    assert parse_hold(text) == (hold, None)


def test_a_hold_is_active_until_its_expiry_and_forever_without_one() -> None:
    timed = Hold("r", since="2026-03-01T12:00:00Z", until="2026-03-01T14:00:00Z")
    assert timed.expiry == dt.datetime(2026, 3, 1, 14, tzinfo=dt.UTC)
    assert timed.active(NOW) and not timed.active(NOW + dt.timedelta(hours=2))
    forever = Hold("r", since="2026-03-01T12:00:00Z")
    assert forever.expiry is None and forever.active(NOW + dt.timedelta(days=3650))


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        (7, "not a string"),
        ('{"reason": 1, "since": "x"}', "must be strings"),
        ('{"reason": "r", "since": "s", "until": "tomorrow"}', "not an RFC 3339 time"),
        ('{"reason": "r", "since": "s", "versions": {"/a": 3}}', "versions must map"),
    ],
)
def test_a_damaged_hold_reads_as_none_with_a_problem(raw: object, problem: str) -> None:
    hold, found = parse_hold(raw)
    assert hold is None and found is not None and problem in found


def test_no_hold_annotation_is_no_problem() -> None:
    assert parse_hold(None) == (None, None)


def test_times_are_rfc3339_utc() -> None:
    assert (
        format_time(dt.datetime(2026, 3, 1, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == "2026-03-01T12:00:00Z"
    )
    assert parse_time("2026-03-01T12:00:00Z") == NOW
    assert parse_time("2026-03-01T12:00:00") == NOW


def entry(version: str, at: str = "2026-03-01T12:00:00Z", cause: str = "moved") -> Entry:
    return Entry(version, f"s3://m/{version}", at, cause)


def test_history_keeps_the_last_ten_per_field_oldest_first() -> None:
    history: dict[str, list[Entry]] = {}
    for n in range(1, 14):
        history = append_history(history, "/spec/a", entry(str(n), f"2026-03-01T12:00:{n:02d}Z"))
    assert [e.version for e in history["/spec/a"]] == [str(n) for n in range(4, 14)]
    assert len(history["/spec/a"]) == MAX_ENTRIES_PER_FIELD


def test_history_over_its_byte_bound_drops_the_oldest_entries_of_any_field() -> None:
    long_uri = "s3://bucket/" + "x" * 700
    history: dict[str, list[Entry]] = {}
    for n in range(10):
        for field in ("/a", "/b", "/c"):
            history = append_history(history, field, Entry(str(n), long_uri, f"2026-03-01T12:{n:02d}:00Z", "moved"))
    assert len(dump_history(history).encode()) <= MAX_HISTORY_BYTES
    kept = [e for entries in history.values() for e in entries]
    assert len(kept) < 30
    oldest_kept = min(e.at for e in kept)
    assert all(e.at >= oldest_kept for e in kept)
    assert all(entries[-1].version == "9" for entries in history.values())


def test_append_history_refuses_an_unknown_cause() -> None:
    with pytest.raises(ValueError, match="unknown history cause"):
        append_history({}, "/a", entry("1", cause="whim"))


def test_history_round_trips_and_skips_damaged_entries() -> None:
    history = append_history({}, "/a", entry("1", cause="created"))
    assert parse_history(dump_history(history)) == (history, None)
    raw = orjson.dumps({"/a": [entry("1").to_json(), {"version": 2}, "x"], "/b": "nope"}).decode()
    parsed, problem = parse_history(raw)
    assert parsed == {"/a": [entry("1")]} and problem is not None and "3 damaged" in problem
    assert parse_history("not json") == ({}, "ignored annotation modelpin.io/history: not JSON")
