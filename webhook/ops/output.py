"""How status and history rows are printed: kubectl-like tables, JSON, YAML."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import yaml

from webhook.ops.status import Row, summary
from webhook.templating.rollout_annotations import Entry

FORMATS = ("table", "wide", "json", "yaml")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart, as kubectl prints them."""
    cells = [list(header), *[[c or "-" for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in cells)


def structured(document: Any, fmt: str) -> str:
    if fmt == "json":
        return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def status(rows: Sequence[Row], fmt: str, all_namespaces: bool) -> str:
    if fmt in ("json", "yaml"):
        return structured({"objects": [r.to_json() for r in rows], "summary": summary(rows)}, fmt)
    header = ["NAME", "MODEL", "RUNNING", "REGISTRY", "STATE", "SERVING"]
    if fmt == "wide":
        header += ["FIELD", "REFERENCE", "URI", "REASON", "UNTIL"]
    if all_namespaces:
        header.insert(0, "NAMESPACE")
    lines = []
    for r in rows:
        line = [f"{r.kind}/{r.name}", r.model, r.running_version, r.registry_version, state_cell(r), r.serving]
        if fmt == "wide":
            line += [r.field, r.reference, r.uri, r.reason or "", r.until or ""]
        if all_namespaces:
            line.insert(0, r.namespace)
        lines.append(line)
    return table(header, lines)


def state_cell(r: Row) -> str:
    """``rolling-out 10 %`` for a field under a rollout: the share is what an operator watches."""
    return f"{r.state} {r.percent} %" if r.percent is not None else r.state


def history(entries: Sequence[tuple[str, Entry]], fmt: str) -> str:
    """``(pointer, entry)`` pairs, oldest first per field."""
    if fmt in ("json", "yaml"):
        grouped: dict[str, list[dict[str, str]]] = {}
        for pointer, entry in entries:
            grouped.setdefault(pointer, []).append(entry.to_json())
        return structured({"history": grouped}, fmt)
    return table(
        ["FIELD", "WHEN", "VERSION", "CAUSE", "URI"], [[p, e.at, e.version, e.cause, e.uri] for p, e in entries]
    )
