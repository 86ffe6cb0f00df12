"""Kubernetes Events on managed objects: version changes, gated moves (once each), references that stop resolving."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from webhook.reconcile.index import Index, Key, Tracked
from webhook.reconcile.kube import KUBE_ERRORS, Kube, describe
from webhook.reconcile.loops import Once
from webhook.registry.resolver import ResolutionError
from webhook.templating.causes import Cause


@dataclass(slots=True)
class Events:
    kube: Kube
    errors: Once
    warning_interval_seconds: float
    _warned: dict[tuple[Key, str], float] = field(default_factory=dict)
    _gated: dict[tuple[Key, str], str] = field(default_factory=dict)  # (object, field) -> the gated version told

    async def gated(self, t: Tracked, pointer: str, version: str, message: str) -> None:
        """A move the namespace's require_tags refuse: one Warning per object, field and target version."""
        if self._gated.get((t.key, pointer)) == version:
            return
        self._gated[(t.key, pointer)] = version
        await self.record(t, "Warning", "ModelVersionGated", message[:1000])

    async def record(self, t: Tracked, event_type: str, reason: str, message: str) -> None:
        try:
            await self.kube.event(t.involved(), event_type, reason, message)
            self.errors.ok("event", "events")
        except KUBE_ERRORS as exc:
            self.errors.failed("event", "recording events failing", describe(exc))

    async def warn(self, t: Tracked, pointer: str, exc: Exception) -> None:
        """A reference that no longer resolves keeps its version; say so, rate-limited."""
        key = (t.key, pointer)
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) < self.warning_interval_seconds:
            return
        self._warned[key] = now
        cause = exc.cause.value if isinstance(exc, ResolutionError) else Cause.INVALID.value
        message = f"{pointer}: keeping the current version: {exc}"[:1000]
        await self.record(t, "Warning", f"ModelReference{cause.title().replace('_', '')}", message)

    def prune(self, index: Index) -> None:
        horizon = time.monotonic() - self.warning_interval_seconds
        for key in [k for k, at in self._warned.items() if at < horizon or k[0] not in index]:
            del self._warned[key]
        for gated in [k for k in self._gated if k[0] not in index]:
            del self._gated[gated]
