"""The state gauges: the picture ``modelpin status`` shows, from the leader's index and its last lookups.

``modelpin_objects{state}`` counts template fields by the state status names
(the same function decides); ``modelpin_model_versions_running`` counts the
objects running each version. Label sets stay bounded: a version no longer
running loses its series.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from webhook.metrics import OBJECT_STATE, VERSIONS_RUNNING
from webhook.reconcile.index import Index, Key
from webhook.reconcile.states import STATES, Lookup, decide, missing_tags
from webhook.registry.resolver import ResolutionError, Resolver
from webhook.templating.grammar import TemplateError, parse

PlanKey = tuple[str, str, str]
# states decided without asking the registry: a field in one of them needs no lookup to be counted
WITHOUT_LOOKUP = ("paused", "rolled-back", "held", "rolling-out", "pinned")


@dataclass(slots=True)
class StateGauges:
    resolver: Resolver
    named: dict[PlanKey, Lookup] = field(default_factory=dict)  # each reference's last answer from a compare
    _running: set[tuple[str, str, str]] = field(default_factory=set)

    def publish(self, index: Index, now: dt.datetime) -> set[str]:
        """Set both gauges; returns the models of fields never compared yet (not counted until they are)."""
        counts = dict.fromkeys(STATES, 0)
        running: dict[tuple[str, str, str], set[Key]] = {}
        used: set[PlanKey] = set()
        unknown: set[str] = set()
        for t in index.using(None):
            required = self.resolver.settings.policy(t.namespace).require_tags
            rollout = t.rollout.state if t.rollout is not None else None
            for r in t.refs:
                version = r.record.get("version", "")
                if version:
                    running.setdefault((r.registry, r.model, version), set()).add(t.key)
                lookup: Lookup | None
                try:
                    p = self.resolver.plan(parse(r.template), t.namespace)
                except (TemplateError, ResolutionError) as exc:
                    pinned, lookup = False, Lookup(None, str(exc))
                else:
                    pinned = p.reference.selector.pinned
                    used.add(p.key)
                    lookup = self.named.get(p.key)
                state, _, _ = decide(
                    paused=t.paused,
                    hold=t.hold,
                    now=now,
                    pinned=pinned,
                    lookup=lookup or Lookup(None),
                    missing_tags=missing_tags(lookup.version if lookup else None, required),
                    running_version=version,
                    rollout=rollout if rollout is not None and r.pointer in rollout.from_ else None,
                )
                if lookup is None and state not in WITHOUT_LOOKUP:
                    unknown.add(r.model)
                    continue
                counts[state] += 1
        for key in set(self.named) - used:
            del self.named[key]
        for state, n in counts.items():
            OBJECT_STATE[state].set(n)
        for labels in self._running - running.keys():
            VERSIONS_RUNNING.remove(*labels)
        for labels, keys in running.items():
            VERSIONS_RUNNING.labels(*labels).set(len(keys))
        self._running = set(running)
        return unknown

    def clear(self) -> None:
        """Not leading: zeros and no versions, so summing over replicas gives the leader's picture."""
        for child in OBJECT_STATE.values():
            child.set(0)
        VERSIONS_RUNNING.clear()
        self._running.clear()
        self.named.clear()
