"""``modelpin hold``, ``release`` and ``history``: the hold and history annotations, read and written.

A hold is written by a merge patch with the user's own credentials; the webhook
and the reconciler honour it (DESIGN.md section 6a).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from webhook.ops import objects
from webhook.ops.kinds import Named
from webhook.reconcile.kube import Kube
from webhook.templating import record_annotations
from webhook.templating.grammar import TemplateError, parse
from webhook.templating.rollout_annotations import (
    HISTORY,
    HOLD,
    Entry,
    History,
    Hold,
    dump_hold,
    format_time,
    parse_history,
    parse_hold,
)


class HoldError(ValueError):
    """The hold asked for cannot be made; the message says why."""


def _model_of(records: record_annotations.Records, pointer: str) -> str:
    recorded = records.resolved.get(pointer, {}).get("model")
    if recorded:
        return recorded
    try:
        return parse(records.templates[pointer]).reference.name
    except TemplateError:
        return ""


def previous_version(entries: list[Entry], current: str) -> str | None:
    """The newest version in the history other than ``current``."""
    for entry in reversed(entries):
        if entry.version != current:
            return entry.version
    return None


def build_hold(
    obj: Mapping[str, Any],
    *,
    reason: str,
    now: dt.datetime,
    until: dt.datetime | None = None,
    by: str = "",
    previous: bool = False,
    version: str | None = None,
    model: str | None = None,
) -> Hold:
    meta = obj.get("metadata") or {}
    target = f"{meta.get('name')} in {meta.get('namespace')}"
    if not reason.strip():
        raise HoldError("--reason must say why the object is held")
    records = record_annotations.read(meta)
    if not records.templates:
        raise HoldError(f"{target} has no modelpin templates ({record_annotations.TEMPLATES} is missing or empty)")
    pointers = sorted(records.templates)
    if model is not None:
        pointers = [p for p in pointers if _model_of(records, p) == model]
        if not pointers:
            known = sorted({_model_of(records, p) for p in records.templates})
            raise HoldError(f"no field of {target} references model {model!r} (its models: {', '.join(known)})")
    versions: dict[str, str] = {}
    if previous:
        history, _ = parse_history((meta.get("annotations") or {}).get(HISTORY))
        lacking = []
        for p in pointers:
            found = previous_version(history.get(p, []), records.resolved.get(p, {}).get("version", ""))
            if found is None:
                lacking.append(p)
            else:
                versions[p] = found
        if lacking:
            raise HoldError(
                f"--previous: the history of {target} has no earlier version for {', '.join(lacking)}; "
                "name one with --version N"
            )
    elif version is not None:
        if not (version.isascii() and version.isdigit() and int(version) >= 1):
            raise HoldError(f"--version {version!r}: expected a registered version number (1, 2, ...)")
        models = sorted({_model_of(records, p) for p in pointers})
        if len(models) > 1:
            raise HoldError(f"--version: the fields of {target} reference {', '.join(models)}; name one with --model")
        versions = dict.fromkeys(pointers, str(int(version)))
    return Hold(
        reason=reason.strip(),
        since=format_time(now),
        until=format_time(until) if until is not None else None,
        by=by,
        versions=versions,
    )


def describe_hold(named: Named, namespace: str, name: str, hold: Hold) -> str:
    until = f"until {hold.until}" if hold.until else "until released"
    line = f"held {named.singular}/{name} in {namespace} {until}: {hold.reason}"
    if hold.versions:
        pins = ", ".join(f"{p} at version {v}" for p, v in sorted(hold.versions.items()))
        line += f" (pinned: {pins})"
    return line


async def hold(kube: Kube, named: Named, namespace: str, name: str, **options: Any) -> Hold:
    """Read the object, build the hold from it, write it; ``options`` as ``build_hold`` takes them."""
    obj = await objects.get(kube, named.kind, namespace, name)
    made = build_hold(obj, **options)
    await objects.annotate(kube, named.kind, namespace, name, {HOLD: dump_hold(made)})
    return made


async def release(kube: Kube, named: Named, namespace: str, name: str) -> tuple[bool, Hold | None]:
    """Remove the hold: whether there was one, and what it was if it could be read."""
    obj = await objects.get(kube, named.kind, namespace, name)
    annotations = record_annotations.annotations_of(obj)
    if HOLD not in annotations:
        return False, None
    previous, _ = parse_hold(annotations.get(HOLD))
    await objects.annotate(kube, named.kind, namespace, name, {HOLD: None})
    return True, previous


async def history(kube: Kube, named: Named, namespace: str, name: str) -> tuple[History, str | None]:
    obj = await objects.get(kube, named.kind, namespace, name)
    return parse_history(record_annotations.annotations_of(obj).get(HISTORY))
