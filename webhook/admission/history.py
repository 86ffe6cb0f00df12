"""What admission adds to ``modelpin.io/history``: one entry per field whose resolution changed.

Changed means: the version or URI differs from the stored object's record for the
field (UPDATE ``oldObject``), or there was no record. Re-admitting an unchanged
object adds nothing, so the annotation, and the patch, stay as they were.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from webhook.admission.holds import Holding
from webhook.templating import record_annotations as records
from webhook.templating.grammar import is_candidate
from webhook.templating.rollout_annotations import (
    HISTORY,
    MAX_ENTRIES_PER_FIELD,
    MAX_HISTORY_BYTES,
    Entry,
    History,
    append_history,
    dump_history,
    format_time,
    parse_history,
    parse_time,
)

# How a field's new resolution came about, as decide() tells it.
RESOLVED, PINNED, KEPT = "resolved", "pinned", "kept"


def updated(
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    old_rec: records.Records | None,
    *,
    templates: Mapping[str, str],
    resolved: Mapping[str, Mapping[str, str]],
    how: Mapping[str, str],
    old_holding: Holding,
    holding: Holding,
    now: dt.datetime,
) -> tuple[str | None, list[str]]:
    """The new history annotation (None: leave it as it is) and warnings about a damaged one."""
    before = _records(old_rec)
    at = format_time(now)
    entries: list[tuple[str, Entry]] = []
    base: History | None = None
    problems: list[str] = []
    for pointer, record in resolved.items():
        prev = before.get(pointer)
        if prev is not None and prev.get("version") == record["version"] and prev.get("uri") == record["uri"]:
            continue
        if base is None:
            base, problems = _base(obj, old)
        if pointer in base and _last_is(base, pointer, record["version"], record["uri"]):
            continue  # already written: our own output admitted again (a CREATE has no stored record)
        if prev is None or old_rec is None:
            cause = "created"
        else:
            cause = _cause(pointer, prev, old_rec, templates, how, old_holding, holding, base)
        entries.append((pointer, Entry(record["version"], record["uri"], at, cause)))
    for pointer, prev in before.items():
        if pointer in resolved:
            continue
        value = _value(obj, pointer)
        if value is None or is_candidate(value) or value == prev.get("uri"):
            continue  # the field is gone, or was refused; no literal replaced the resolution
        if base is None:
            base, problems = _base(obj, old)
        if not _last_is(base, pointer, "", value):
            entries.append((pointer, Entry("", value, at, "edit")))
    if not entries or base is None:
        return None, []
    return _appended(base, entries), problems


def _appended(base: History, entries: list[tuple[str, Entry]]) -> str:
    """``base`` with ``entries`` appended, bounded as ``append_history`` bounds it, as the annotation's text.

    Appended at once and written once: within the byte bound (nearly always), that is what
    appending one by one gives, without writing the whole annotation once per entry.
    """
    out: History = {p: list(e) for p, e in base.items()}
    for pointer, entry in entries:
        out[pointer] = [*out.get(pointer, []), entry][-MAX_ENTRIES_PER_FIELD:]
    text = dump_history(out)
    if len(text.encode()) <= MAX_HISTORY_BYTES:
        return text
    for pointer, entry in entries:
        base = append_history(base, pointer, entry)
    return dump_history(base)


def _last_is(history: History, pointer: str, version: str, uri: str) -> bool:
    last = history.get(pointer, [])[-1:]
    return bool(last) and last[0].version == version and last[0].uri == uri


def _records(rec: records.Records | None) -> dict[str, dict[str, str]]:
    """The stored object's resolutions that count as records (a template beside them)."""
    if rec is None:
        return {}
    return {p: r for p, r in rec.resolved.items() if p in rec.templates}


def _base(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> tuple[History, list[str]]:
    """The history to append to: the object's as sent, or the stored one's when the sender left it out."""
    sent = records.annotations_of(obj)
    raw = sent.get(HISTORY) if HISTORY in sent else records.annotations_of(old).get(HISTORY)
    history, problem = parse_history(raw)
    return history, [problem] if problem else []


def _cause(
    pointer: str,
    prev: Mapping[str, str],
    old_rec: records.Records,
    templates: Mapping[str, str],
    how: Mapping[str, str],
    old_holding: Holding,
    holding: Holding,
    history: History,
) -> str:
    if how.get(pointer) == PINNED:
        return "rollback"
    if how.get(pointer) == KEPT:
        return "hold"
    if old_rec.templates.get(pointer) != templates.get(pointer):
        return "template"
    if not holding.active and _released(pointer, old_holding, history):
        return "released"
    return "moved"


def _released(pointer: str, old_holding: Holding, history: History) -> bool:
    """Whether the stored object was held and this is the field's first move since the hold ended.

    A hold removed counts at once; an expired one stays on the object, so only a move
    with no entry since the expiry is its release.
    """
    if not old_holding.present:
        return False
    expiry = old_holding.expiry
    if expiry is None:
        return True
    last = history.get(pointer, [])[-1:]
    if not last:
        return True
    try:
        return parse_time(last[0].at) < expiry
    except ValueError:
        return True


def _value(obj: Any, pointer: str) -> str | None:
    """The string at ``pointer`` in ``obj``, if there is one."""
    node = obj
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node if isinstance(node, str) else None
