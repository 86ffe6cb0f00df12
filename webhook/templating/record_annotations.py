"""The label and annotations modelpin writes on objects (DESIGN.md section 4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from webhook.templating.grammar import is_candidate
from webhook.templating.json_objects import NotAnObject, load_object

PREFIX = "modelpin.io/"
MANAGED = PREFIX + "managed"
TEMPLATES = PREFIX + "templates"
RESOLVED = PREFIX + "resolved"
REFRESH = PREFIX + "refresh"
PAUSED = PREFIX + "paused"

RECORD_FIELDS = ("registry", "model", "selector", "version", "run_id", "uri")
# Kept when a non-empty string: the MLflow 3 logged model a registered version is linked to.
# Optional, so records written before it (and versions without one) stay as they are.
MODEL_ID = "model_id"


def dumps(value: Mapping[str, Any]) -> str:
    """Deterministic JSON, so re-admitting our own output compares equal."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(slots=True)
class Records:
    templates: dict[str, str] = field(default_factory=dict)
    resolved: dict[str, dict[str, str]] = field(default_factory=dict)
    paused: bool = False
    refresh_ms: int = 0
    problems: list[str] = field(default_factory=list)

    def recorded_uri(self, pointer: str) -> str | None:
        entry = self.resolved.get(pointer)
        return entry.get("uri") if entry and pointer in self.templates else None


def read(metadata: Mapping[str, Any]) -> Records:
    """Read the records; damaged ones are reported, never fatal.

    ``metadata`` comes from the request: any JSON may stand where a map or a
    string is expected, and each oddity is a problem reported, not an exception.
    """
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        return Records(problems=["ignored metadata.annotations: not an object"])
    records = Records(paused=annotations.get(PAUSED) == "true")
    templates = _load(annotations, TEMPLATES, records.problems)
    records.templates = {str(k): v for k, v in templates.items() if isinstance(v, str)}
    resolved = _load(annotations, RESOLVED, records.problems)
    for pointer, entry in resolved.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("uri"), str):
            continue
        if is_candidate(entry["uri"]):
            # Written back, it would put a raw template in the spec: the record is forged or damaged.
            records.problems.append(f"ignored the recorded URI of {pointer}: it is itself a template")
            continue
        kept = {f: _text(entry.get(f, "")) for f in RECORD_FIELDS}
        model_id = entry.get(MODEL_ID)
        if isinstance(model_id, str) and model_id:
            kept[MODEL_ID] = model_id
        records.resolved[str(pointer)] = kept
    raw_refresh = annotations.get(REFRESH)
    if raw_refresh:
        if isinstance(raw_refresh, str) and raw_refresh.isascii() and raw_refresh.isdigit() and len(raw_refresh) <= 18:
            records.refresh_ms = int(raw_refresh)
        else:
            shown = repr(raw_refresh)[:40]
            records.problems.append(f"ignored {REFRESH}={shown}: not milliseconds since the epoch")
    return records


def _text(value: object) -> str:
    # modelpin writes only strings; anything else is damage, and rendering it could recurse without bound
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**18 else ""


def _load(annotations: Mapping[str, Any], key: str, problems: list[str]) -> dict[str, Any]:
    raw = annotations.get(key)
    if not raw:
        return {}
    value, problem = object_annotation(raw, key)
    if problem is not None:
        problems.append(problem)
    return value or {}


def annotations_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """``obj``'s metadata.annotations; empty when absent or not an object (as sent, any JSON may stand there)."""
    metadata = obj.get("metadata") if obj is not None else None
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def object_annotation(raw: object, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object annotation ``key`` holds as ``raw``, or why it is ignored."""
    if not isinstance(raw, str):
        return None, f"ignored annotation {key}: not a string"
    try:
        return load_object(raw), None
    except NotAnObject as exc:
        return None, f"ignored annotation {key}: {exc.reason}"
