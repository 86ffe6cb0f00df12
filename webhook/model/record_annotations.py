"""The label and annotations modelpin writes on objects (DESIGN.md section 4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

PREFIX = "modelpin.io/"
MANAGED = PREFIX + "managed"
TEMPLATES = PREFIX + "templates"
RESOLVED = PREFIX + "resolved"
REFRESH = PREFIX + "refresh"
PAUSED = PREFIX + "paused"

RECORD_FIELDS = ("registry", "model", "selector", "version", "run_id", "uri")


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
    """Read the records; damaged ones are reported, never fatal."""
    annotations = metadata.get("annotations") or {}
    records = Records(paused=annotations.get(PAUSED) == "true")
    templates = _load(annotations, TEMPLATES, records.problems)
    records.templates = {str(k): v for k, v in templates.items() if isinstance(v, str)}
    resolved = _load(annotations, RESOLVED, records.problems)
    records.resolved = {
        str(k): {f: str(v.get(f, "")) for f in RECORD_FIELDS}
        for k, v in resolved.items()
        if isinstance(v, dict) and isinstance(v.get("uri"), str)
    }
    raw_refresh = annotations.get(REFRESH)
    if raw_refresh:
        try:
            records.refresh_ms = int(raw_refresh)
        except ValueError:
            records.problems.append(f"ignored {REFRESH}={raw_refresh!r}: not milliseconds since the epoch")
    return records


def _load(annotations: Mapping[str, Any], key: str, problems: list[str]) -> dict[str, Any]:
    raw = annotations.get(key)
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        problems.append(f"ignored annotation {key}: not JSON")
        return {}
    if not isinstance(value, dict):
        problems.append(f"ignored annotation {key}: not a JSON object")
        return {}
    return value
