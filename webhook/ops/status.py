"""``modelpin status``: one row per template field of every managed object.

The state of a field, first match wins: paused > rolled-back > held > rolling-out
> pinned > unresolvable > gated > behind > current (DESIGN.md section 6a). The registry is asked
directly, bypassing the resolver's caches: the answer is what it names now.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.config import Settings
from webhook.ops import objects
from webhook.ops.kinds import singular
from webhook.reconcile.kube import Kind, Kube
from webhook.reconcile.states import STATES as STATES  # re-exported: the CLI lists them
from webhook.reconcile.states import Lookup, decide, missing_tags
from webhook.registry.clients import ModelVersion, RegistryError
from webhook.registry.resolver import Plan, ResolutionError, Resolver, select_version
from webhook.templating import record_annotations
from webhook.templating.grammar import TemplateError, parse
from webhook.templating.rollout_annotations import HOLD, parse_hold
from webhook.templating.rollout_policy import ROLLOUT, parse_state

# registry lookups in flight at once
CONCURRENCY = 8


@dataclass(slots=True)
class Row:
    namespace: str
    kind: str
    name: str
    field: str
    model: str
    reference: str
    running_version: str
    registry_version: str
    state: str
    serving: str
    uri: str = ""
    reason: str | None = None
    until: str | None = None
    percent: int | None = None  # rolling-out: the share of traffic on the new version

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "namespace": self.namespace,
            "kind": self.kind,
            "name": self.name,
            "field": self.field,
            "model": self.model,
            "reference": self.reference,
            "running_version": self.running_version,
            "registry_version": self.registry_version,
            "state": self.state,
            "serving": self.serving,
            "uri": self.uri,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        if self.until is not None:
            out["until"] = self.until
        if self.percent is not None:
            out["percent"] = self.percent
        return out


def serving(obj: Mapping[str, Any]) -> str:
    """KServe's Ready condition (True/False), Seldon's status.state, else unknown."""
    status = obj.get("status")
    if not isinstance(status, Mapping):
        return "unknown"
    conditions = status.get("conditions")
    if isinstance(conditions, list):
        for cond in conditions:
            if isinstance(cond, Mapping) and cond.get("type") == "Ready" and isinstance(cond.get("status"), str):
                return str(cond["status"])
    state = status.get("state")
    return state if isinstance(state, str) and state else "unknown"


@dataclass(slots=True)
class _Field:
    obj: Mapping[str, Any]
    kind: Kind
    pointer: str
    template: str
    reference: str
    plan: Plan | None
    problem: str


async def collect(
    kube: Kube,
    resolver: Resolver,
    settings: Settings,
    kinds: Iterable[Kind],
    namespace: str | None,
    now: dt.datetime,
) -> list[Row]:
    fields: list[_Field] = []
    for kind in kinds:
        async for obj in objects.list_managed(kube, kind, namespace):
            fields.extend(_fields(obj, kind, resolver))
    plans = {f.plan.key: f.plan for f in fields if f.plan is not None}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def ask(p: Plan) -> Lookup:
        async with gate:
            return await _lookup(resolver, p)

    answers = dict(zip(plans, await asyncio.gather(*(ask(p) for p in plans.values())), strict=True))
    return [_row(f, answers, settings, now) for f in fields]


def _fields(obj: Mapping[str, Any], kind: Kind, resolver: Resolver) -> list[_Field]:
    meta = obj.get("metadata") or {}
    records = record_annotations.read(meta)
    out = []
    for pointer, text in sorted(records.templates.items()):
        plan: Plan | None = None
        problem, reference = "", text
        try:
            template = parse(text)
            reference = str(template.reference)
            plan = resolver.plan(template, meta.get("namespace"))
        except TemplateError as exc:
            problem = f"template does not parse: {exc}"
        except ResolutionError as exc:
            problem = str(exc)
        out.append(_Field(obj, kind, pointer, text, reference, plan, problem))
    return out


async def _lookup(resolver: Resolver, p: Plan) -> Lookup:
    async def ask(registry: Any) -> ModelVersion:
        return await select_version(registry, p.reference)

    try:
        return Lookup(await resolver.call(p.registry, ask))
    except RegistryError as exc:
        return Lookup(None, str(exc))


def _row(f: _Field, answers: Mapping[tuple[str, str, str], Lookup], settings: Settings, now: dt.datetime) -> Row:
    meta = f.obj.get("metadata") or {}
    namespace = str(meta.get("namespace", ""))
    annotations = meta.get("annotations") or {}
    records = record_annotations.read(meta)
    recorded = records.resolved.get(f.pointer, {})
    hold, _ = parse_hold(annotations.get(HOLD))
    rollout, _ = parse_state(annotations.get(ROLLOUT))
    if rollout is not None and f.pointer not in rollout.from_:
        rollout = None
    lookup = answers[f.plan.key] if f.plan is not None else Lookup(None, f.problem)
    required = settings.policy(namespace).require_tags
    # a version number or an MLflow 3 logged model id: neither moves
    pinned = f.plan is not None and f.plan.reference.selector.pinned
    running = recorded.get("version", "")
    state, reason, until = decide(
        paused=records.paused,
        hold=hold,
        now=now,
        pinned=pinned,
        lookup=lookup,
        missing_tags=missing_tags(lookup.version, required),
        running_version=running,
        rollout=rollout,
    )
    model = f.plan.reference.name if f.plan is not None else recorded.get("model", "")
    return Row(
        namespace=namespace,
        kind=singular(f.kind),
        name=str(meta.get("name", "")),
        field=f.pointer,
        model=model,
        reference=f.reference,
        running_version=running,
        registry_version=lookup.version.version if lookup.version is not None else "",
        state=state,
        serving=serving(f.obj),
        uri=recorded.get("uri", ""),
        reason=reason,
        until=until,
        percent=rollout.percent if rollout is not None and state == "rolling-out" else None,
    )


def summary(rows: Iterable[Row]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return {state: counts[state] for state in STATES if state in counts}
