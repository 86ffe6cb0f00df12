"""The reconciler's index of managed objects, by the models they reference.

Built from the records the webhook writes (``modelpin.io/templates`` and
``modelpin.io/resolved``), so the reconciler never needs to understand a kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.model import record_annotations as records
from webhook.reconcile.kube import Kind


@dataclass(frozen=True, slots=True)
class Ref:
    pointer: str
    template: str
    record: Mapping[str, str]  # registry, model, selector, version, run_id, uri

    @property
    def model(self) -> str:
        return self.record.get("model", "")


@dataclass(slots=True)
class Tracked:
    kind: Kind
    obj: dict[str, Any]
    refs: list[Ref] = field(default_factory=list)
    paused: bool = False
    refresh_ms: int = 0

    @property
    def key(self) -> tuple[Kind, str, str]:
        meta = self.obj["metadata"]
        return (self.kind, meta.get("namespace", ""), meta["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace", ""))

    @property
    def kind_name(self) -> str:
        return str(self.obj.get("kind", ""))

    def describe(self) -> str:
        return f"{self.kind.plural}/{self.namespace}/{self.obj['metadata']['name']}"


def track(kind: Kind, obj: dict[str, Any]) -> Tracked:
    rec = records.read(obj.get("metadata") or {})
    refs = [Ref(ptr, text, rec.resolved[ptr]) for ptr, text in rec.templates.items() if ptr in rec.resolved]
    return Tracked(kind, obj, refs, rec.paused, rec.refresh_ms)


@dataclass(frozen=True, slots=True)
class VersionChange:
    ref: Ref
    old_version: str

    def message(self) -> str:
        r = self.ref.record
        return f"{r.get('model')}: {self.old_version} -> {r.get('version')} ({r.get('selector')})"


class Index:
    def __init__(self) -> None:
        self._objects: dict[tuple[Kind, str, str], Tracked] = {}

    def __len__(self) -> int:
        return len(self._objects)

    def upsert(self, kind: Kind, obj: dict[str, Any]) -> tuple[Tracked, list[VersionChange]]:
        """Record the object; returns the version changes against what was indexed before."""
        tracked = track(kind, obj)
        previous = self._objects.get(tracked.key)
        self._objects[tracked.key] = tracked
        if previous is None:
            return tracked, []
        before = {ref.pointer: ref.record.get("version", "") for ref in previous.refs}
        changes = [
            VersionChange(ref, before[ref.pointer])
            for ref in tracked.refs
            if ref.pointer in before and before[ref.pointer] != ref.record.get("version", "")
        ]
        return tracked, changes

    def remove(self, kind: Kind, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        self._objects.pop((kind, meta.get("namespace", ""), meta.get("name", "")), None)

    def replace_kind(self, kind: Kind, objs: Iterable[dict[str, Any]]) -> list[tuple[Tracked, list[VersionChange]]]:
        """After a (re)list: the listed objects are all there is of this kind.

        Returns the version changes against what was indexed before, so a change
        made while a watch was down is reported like one seen by the watch.
        """
        listed: set[tuple[Kind, str, str]] = set()
        changed: list[tuple[Tracked, list[VersionChange]]] = []
        for obj in objs:
            tracked, changes = self.upsert(kind, obj)
            listed.add(tracked.key)
            if changes:
                changed.append((tracked, changes))
        for key in [k for k in self._objects if k[0] == kind and k not in listed]:
            del self._objects[key]
        return changed

    def using(self, models: set[str] | None) -> list[Tracked]:
        """Objects referencing any of ``models`` (all managed objects for None)."""
        return [t for t in self._objects.values() if models is None or any(r.model in models for r in t.refs)]
