"""The rollout-control annotations: ``modelpin.io/hold`` and ``modelpin.io/history`` (DESIGN.md section 6a).

Both are read from objects anyone may edit, so parsing is tolerant: a damaged
annotation reads as empty plus a problem string, never an exception. Both are
written as deterministic JSON (sorted keys), like the records annotations.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.templating.record_annotations import PREFIX, dumps, object_annotation

HOLD = PREFIX + "hold"
HISTORY = PREFIX + "history"

CAUSES = ("created", "moved", "template", "hold", "edit", "rollback", "released")
MAX_ENTRIES_PER_FIELD = 10
# The whole history annotation; the apiserver allows 256 KiB for all annotations together.
MAX_HISTORY_BYTES = 16 * 1024


def format_time(when: dt.datetime) -> str:
    """RFC 3339 in UTC, to the second: ``2026-01-02T03:04:05Z``."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    """RFC 3339 (``Z`` or an offset); a time without a zone is taken as UTC. Raises ValueError."""
    when = dt.datetime.fromisoformat(text.strip())
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class Hold:
    reason: str
    since: str
    until: str | None = None
    by: str = ""
    # pointer -> version to pin; empty: keep what runs now
    versions: Mapping[str, str] = field(default_factory=dict)

    @property
    def expiry(self) -> dt.datetime | None:
        """When the hold ends; None: until released (an unreadable time also counts as no expiry)."""
        if self.until is None:
            return None
        try:
            return parse_time(self.until)
        except ValueError:
            return None

    def active(self, now: dt.datetime) -> bool:
        expiry = self.expiry
        return expiry is None or now < expiry

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "until": self.until,
            "since": self.since,
            "by": self.by,
            "versions": dict(self.versions),
        }


def dump_hold(hold: Hold) -> str:
    return dumps(hold.to_json())


def parse_hold(raw: object) -> tuple[Hold | None, str | None]:
    """The hold, or None; the second value names what was wrong with a damaged annotation."""
    if raw is None or raw == "":
        return None, None
    value, problem = object_annotation(raw, HOLD)
    if value is None:
        return None, problem
    reason, until, since, by = value.get("reason"), value.get("until"), value.get("since"), value.get("by", "")
    if not isinstance(reason, str) or not isinstance(since, str) or not isinstance(by, str):
        return None, f"ignored annotation {HOLD}: reason, since and by must be strings"
    if until is not None:
        if not isinstance(until, str):
            return None, f"ignored annotation {HOLD}: until must be an RFC 3339 time or null"
        try:
            parse_time(until)
        except ValueError:
            return None, f"ignored annotation {HOLD}: until {until[:40]!r} is not an RFC 3339 time"
    versions = value.get("versions") or {}
    if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
        return None, f"ignored annotation {HOLD}: versions must map field pointers to version strings"
    return Hold(reason, since, until, by, {str(k): v for k, v in versions.items()}), None


@dataclass(frozen=True, slots=True)
class Entry:
    version: str
    uri: str
    at: str
    cause: str

    def to_json(self) -> dict[str, str]:
        return {"version": self.version, "uri": self.uri, "at": self.at, "cause": self.cause}


History = dict[str, list[Entry]]


def parse_history(raw: object) -> tuple[History, str | None]:
    """Each field's entries, oldest first; damaged entries are skipped and reported."""
    if raw is None or raw == "":
        return {}, None
    value, problem = object_annotation(raw, HISTORY)
    if value is None:
        return {}, problem
    history: History = {}
    skipped = 0
    for pointer, entries in value.items():
        if not isinstance(entries, list):
            skipped += 1
            continue
        kept: list[Entry] = []
        for item in entries:
            entry = _entry(item)
            if entry is None:
                skipped += 1
            else:
                kept.append(entry)
        if kept:
            history[str(pointer)] = kept
    return history, (f"ignored {skipped} damaged entries of annotation {HISTORY}" if skipped else None)


def _entry(item: object) -> Entry | None:
    if not isinstance(item, dict):
        return None
    fields = [item.get(k) for k in ("version", "uri", "at", "cause")]
    if not all(isinstance(f, str) for f in fields) or fields[3] not in CAUSES:
        return None
    return Entry(*fields)  # type: ignore[arg-type]  # all checked to be str above


def dump_history(history: Mapping[str, list[Entry]]) -> str:
    return dumps({pointer: [e.to_json() for e in entries] for pointer, entries in history.items() if entries})


def append_history(history: Mapping[str, list[Entry]], pointer: str, entry: Entry) -> History:
    """A new history with ``entry`` last for ``pointer``: at most 10 per field, within the byte bound.

    When the whole annotation is too large, the oldest entries go first, whichever
    field they belong to; the entry just added is always kept.
    """
    if entry.cause not in CAUSES:
        raise ValueError(f"unknown history cause {entry.cause!r} (known: {', '.join(CAUSES)})")
    out: History = {p: list(entries) for p, entries in history.items()}
    entries = [*out.get(pointer, []), entry]
    out[pointer] = entries[-MAX_ENTRIES_PER_FIELD:]
    while len(dump_history(out).encode()) > MAX_HISTORY_BYTES:
        candidates = [(p, e[0]) for p, e in out.items() if e and not (p == pointer and len(e) == 1)]
        if not candidates:
            break
        oldest, _ = min(candidates, key=lambda c: c[1].at)
        del out[oldest][0]
        if not out[oldest]:
            del out[oldest]
    return out
