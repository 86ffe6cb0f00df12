"""Polling, the safety net behind MLflow's webhooks (and the only way to see stage changes).

Each cycle is one registry search per page: a model is compared only when its
fingerprint (aliases, the latest version per stage, the update time) changed
since the last cycle, or when its last compare could not finish. Every
``full_compare_interval_seconds`` everything is compared, whatever the search says.
A model with a move held back by a ``require_tags`` gate is compared every cycle:
a tag set on a version need not change what the search returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from webhook.metrics import POLL_CHANGED
from webhook.reconcile.index import Index
from webhook.reconcile.loops import Once
from webhook.registry.clients import RegisteredModel, Registry, RegistryError
from webhook.registry.resolver import ResolutionError, Resolver
from webhook.templating.grammar import TemplateError, parse


def fingerprint(model: RegisteredModel | None) -> Hashable:
    """What polling compares between cycles: aliases, the latest version per stage, the update time."""
    if model is None:
        return None
    latest = sorted(
        (v.stage, v.version, v.status, v.source, tuple(sorted(v.tags.items()))) for v in model.latest_versions
    )
    return (tuple(sorted(model.aliases.items())), tuple(latest), model.last_updated_ms)


async def _search_all(client: Registry) -> list[RegisteredModel]:
    """``Resolver.call``'s operation for a poll: the registry's own listing of every model."""
    return await client.search_registered_models()


@dataclass(slots=True)
class Poller:
    resolver: Resolver
    index: Index
    errors: Once
    compare_moving: Callable[[set[str]], Awaitable[int]]  # these models' floating references
    compare_all: Callable[[], Awaitable[int]]
    publish: Callable[[], None] = lambda: None  # the state gauges, after each cycle
    # models whose compare or touch could not finish, or whose move a gate holds back
    retry: set[str] = field(default_factory=set)
    _fingerprints: dict[tuple[str, str], Hashable] = field(default_factory=dict)

    def floating(self) -> dict[str, set[str]]:
        """Models that can move, by registry. A pinned version (name/7) never does."""
        found: dict[str, set[str]] = {}
        for t in self.index.using(None):
            if t.paused:
                continue
            for r in t.refs:
                try:
                    if self.resolver.plan(parse(r.template), t.namespace).reference.selector.pinned:
                        continue
                except (TemplateError, ResolutionError):
                    continue  # it cannot resolve at all; the full compare warns about it
                found.setdefault(r.registry, set()).add(r.model)
        return found

    async def changed_models(self) -> set[str]:
        """Models whose aliases or latest versions changed since the last cycle: one search call per page."""
        # emptied in place: the compare and the touches hold this same set
        changed = set(self.retry)
        self.retry.clear()
        fingerprints: dict[tuple[str, str], Hashable] = {}
        for registry, models in self.floating().items():
            if registry not in self.resolver.registries:
                changed |= models  # not configured: resolved in full, and denied there with the reason
                continue
            try:
                # under the registry's circuit, as the webhook's lookups are: a registry that is down is not polled
                listed = await self.resolver.call(registry, _search_all)
                found = {m.name: m for m in listed}
                self.errors.ok(("search", registry), f"registry {registry!r} search")
            except RegistryError as exc:
                self.errors.failed(("search", registry), f"registry {registry!r} search", str(exc))
                fingerprints.update({k: v for k, v in self._fingerprints.items() if k[0] == registry})
                continue
            for model in models:
                key = (registry, model)
                fingerprints[key] = fingerprint(found.get(model))
                if key not in self._fingerprints or self._fingerprints[key] != fingerprints[key]:
                    changed.add(model)
        self._fingerprints = fingerprints
        return changed

    async def poll_once(self) -> int:
        changed = await self.changed_models()
        if not changed:
            return 0
        POLL_CHANGED.inc(len(changed))
        return await self.compare_moving(changed)

    async def poll(self) -> None:
        settings = self.resolver.settings.reconciler
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(settings.poll_interval_seconds)
            if time.monotonic() - last_full >= settings.full_compare_interval_seconds:
                last_full = time.monotonic()
                await self.changed_models()  # the baseline first, so nothing moving meanwhile is missed
                await self.compare_all()
            else:
                await self.poll_once()
            self.publish()  # what the watch showed since: moved objects become current
