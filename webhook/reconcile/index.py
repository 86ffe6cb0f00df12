"""The reconciler's index of managed objects, by the models they reference.

Built from the records the webhook writes (``modelpin.io/templates`` and
``modelpin.io/resolved``), so the reconciler never needs to understand a kind.
It keeps only what the reconciler acts on (kind, namespace, name, uid, the
records and the rollout annotations), never the object: at 20,000 objects the
specs would be most of the process's memory, and a secret the reconciler has
no use for.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.reconcile import rollouts
from webhook.reconcile.kube import Kind
from webhook.templating import record_annotations as records
from webhook.templating.rollout_annotations import HOLD, Hold, parse_hold
from webhook.templating.rollout_policy import ROLLOUT, ROLLOUT_POLICY, Policy, State, parse_policy, parse_state

Key = tuple[Kind, str, str]


@dataclass(frozen=True, slots=True)
class Ref:
    pointer: str
    template: str
    record: Mapping[str, str]  # registry, model, selector, version, run_id, uri

    @property
    def model(self) -> str:
        return self.record.get("model", "")

    @property
    def registry(self) -> str:
        return self.record.get("registry", "")


@dataclass(frozen=True, slots=True)
class Rollout:
    """One object's rollout annotations, as last seen."""

    state: State | None
    policy: Policy | None  # from modelpin.io/rollout-policy; None: the namespace's, if any
    request: rollouts.Request | None
    version: int  # resourceVersion, when it reads as a number: an older event does not undo a newer write

    def newer_than(self, seen: Rollout | None) -> bool:
        """False for an event from before a write already seen (the driver's own, typically)."""
        return seen is None or not self.version or seen.version <= self.version


def _version(meta: Mapping[str, Any]) -> int:
    text = str(meta.get("resourceVersion") or "")
    return int(text) if text.isascii() and text.isdigit() else 0


def read_rollout(obj: Mapping[str, Any]) -> Rollout | None:
    """The rollout annotations of ``obj``; None when it carries none. Damaged ones read as absent, as in admission."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations")
    if not isinstance(annotations, Mapping) or not any(
        k in annotations for k in (ROLLOUT, ROLLOUT_POLICY, rollouts.COMMAND)
    ):
        return None
    state, _ = parse_state(annotations.get(ROLLOUT))
    policy, _ = parse_policy(annotations.get(ROLLOUT_POLICY))
    request, _ = rollouts.parse_request(annotations.get(rollouts.COMMAND))
    return Rollout(state, policy, request, _version(meta))


@dataclass(slots=True)
class Tracked:
    kind: Kind
    kind_name: str
    namespace: str
    name: str
    uid: str
    refs: list[Ref] = field(default_factory=list)
    paused: bool = False
    refresh_ms: int = 0
    hold: Hold | None = None  # modelpin.io/hold, active or expired; a damaged one reads as none, as in admission
    rollout: Rollout | None = None  # None: no rollout annotations

    @property
    def key(self) -> Key:
        return (self.kind, self.namespace, self.name)

    def held(self, now: dt.datetime) -> bool:
        """Whether the webhook keeps this object's versions now: paused, or a hold in force."""
        return self.paused or (self.hold is not None and self.hold.active(now))

    def involved(self) -> dict[str, str]:
        """The Event's involvedObject."""
        return {
            "apiVersion": self.kind.api_version,
            "kind": self.kind_name,
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
        }

    def describe(self) -> str:
        return f"{self.kind.plural}/{self.namespace}/{self.name}"


def _intern(value: object) -> str:
    # thousands of objects share a handful of registries, models, selectors and kinds
    return sys.intern(str(value))


def track(kind: Kind, obj: Mapping[str, Any]) -> Tracked:
    meta = obj.get("metadata") or {}
    rec = records.read(meta)
    annotations = meta.get("annotations")
    hold, _ = parse_hold(annotations.get(HOLD) if isinstance(annotations, Mapping) else None)
    refs = [
        Ref(_intern(ptr), _intern(text), {k: _intern(v) for k, v in rec.resolved[ptr].items()})
        for ptr, text in rec.templates.items()
        if ptr in rec.resolved
    ]
    return Tracked(
        kind,
        _intern(obj.get("kind", "")),
        _intern(meta.get("namespace", "")),
        str(meta.get("name", "")),
        str(meta.get("uid", "")),
        refs,
        rec.paused,
        rec.refresh_ms,
        hold,
        read_rollout(obj),
    )


@dataclass(frozen=True, slots=True)
class VersionChange:
    ref: Ref
    old_version: str

    def message(self) -> str:
        r = self.ref.record
        return f"{r.get('model')}: {self.old_version} -> {r.get('version')} ({r.get('selector')})"


class Index:
    def __init__(self) -> None:
        self._objects: dict[Key, Tracked] = {}
        self._holding: set[Key] = set()  # objects carrying a hold annotation: the expiry check reads only these
        self._rolling: set[Key] = set()  # objects carrying rollout annotations: the rollout driver reads only these
        self.changed = asyncio.Event()  # set as rollout annotations are seen: the driver looks at once

    def __len__(self) -> int:
        return len(self._objects)

    def upsert(self, kind: Kind, obj: Mapping[str, Any]) -> tuple[Tracked, list[VersionChange]]:
        """Record the object; returns the version changes against what was indexed before."""
        tracked = track(kind, obj)
        previous = self._objects.get(tracked.key)
        self._objects[tracked.key] = tracked
        if tracked.hold is not None:
            self._holding.add(tracked.key)
        else:
            self._holding.discard(tracked.key)
        self._note(tracked, previous.rollout if previous is not None else None)
        if previous is None:
            return tracked, []
        before = {ref.pointer: ref.record.get("version", "") for ref in previous.refs}
        changes = [
            VersionChange(ref, before[ref.pointer])
            for ref in tracked.refs
            if ref.pointer in before and before[ref.pointer] != ref.record.get("version", "")
        ]
        return tracked, changes

    def _note(self, t: Tracked, seen: Rollout | None) -> None:
        if t.rollout is None:
            self._rolling.discard(t.key)
            return
        self._rolling.add(t.key)
        if t.rollout.newer_than(seen):
            self.changed.set()
        else:
            t.rollout = seen

    def wrote(self, key: Key, state: State | None, answer: object) -> None:
        """The rollout driver wrote ``state``: the patch's answer (the stored object) where there is one."""
        t = self._objects.get(key)
        if t is None:
            return
        seen = t.rollout
        if isinstance(answer, Mapping) and answer.get("metadata"):
            t.rollout = read_rollout(answer)
        else:
            t.rollout = Rollout(state, seen.policy if seen else None, seen.request if seen else None, 0)
        self._note(t, seen)

    def remove(self, kind: Kind, obj: Mapping[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        key = (kind, str(meta.get("namespace", "")), str(meta.get("name", "")))
        self._objects.pop(key, None)
        self._holding.discard(key)
        self._rolling.discard(key)
        return key

    def retain(self, kind: Kind, listed: set[Key]) -> list[Key]:
        """After a (re)list: drop the objects of ``kind`` that were not listed; returns their keys."""
        gone = [k for k in self._objects if k[0] == kind and k not in listed]
        for key in gone:
            del self._objects[key]
            self._holding.discard(key)
            self._rolling.discard(key)
        return gone

    def using(self, models: set[str] | None) -> list[Tracked]:
        """Objects referencing any of ``models`` (all managed objects for None)."""
        return [t for t in self._objects.values() if models is None or any(r.model in models for r in t.refs)]

    def holding(self) -> list[Tracked]:
        """Objects carrying a hold annotation, in force or expired."""
        return [self._objects[k] for k in self._holding]

    def rolling(self) -> list[Tracked]:
        """Objects carrying rollout annotations (a state, a policy or a command)."""
        return [self._objects[k] for k in self._rolling]

    def get(self, key: Key) -> Tracked | None:
        return self._objects.get(key)

    def __contains__(self, key: Key) -> bool:
        return key in self._objects
