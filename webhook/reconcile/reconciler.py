"""``modelpin reconcile``: when the registry changes, have affected objects re-admitted.

Change sources are MLflow webhooks (fast) and polling (the safety net, and the
only way to see stage changes). Either way the decision is the same: resolve
each reference as the webhook would, and touch an object whose recorded URI
differs with ``modelpin.io/refresh``; the apiserver re-admits it and the
webhook writes the new version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from webhook.metrics import INDEX_SIZE, LAG, LEADER, POLL, TOUCHES
from webhook.model import record_annotations as records
from webhook.model.causes import Cause
from webhook.model.grammar import TemplateError, parse
from webhook.model.uris import Flavor
from webhook.reconcile.index import Index, Tracked, VersionChange
from webhook.reconcile.kube import ApiError, Kind, Kube
from webhook.reconcile.leadership import LeaderLease
from webhook.registry.resolver import ResolutionError, Resolver, now_ms

log = logging.getLogger("modelpin.reconciler")

SELECTOR = f"{records.MANAGED}=true"


@dataclass(slots=True)
class Reconciler:
    resolver: Resolver
    kube: Kube
    kinds: list[Kind]
    index: Index = field(default_factory=Index)
    synced: set[Kind] = field(default_factory=set)  # kinds listed (and compared) at least once
    _warned: dict[tuple[object, str], float] = field(default_factory=dict)

    async def compare(self, models: set[str] | None = None) -> int:
        """Touch every unpaused object whose recorded URI is no longer what the registry says."""
        started = time.monotonic()
        # The token is when the change was noticed, never earlier than the change itself:
        # MLflow's delivery timestamp has whole seconds, and a token before the change
        # would let the webhook serve a cache entry fetched just before it. An entry
        # fetched within the millisecond the change was noticed may predate it too, so
        # the token is the next millisecond, and lookups start once it has come.
        token = now_ms() + 1
        await asyncio.sleep(max(0.0, token / 1000 - time.time()))
        targets = [t for t in self.index.using(models) if not t.paused]
        settings = self.resolver.settings.reconciler
        limit = asyncio.Semaphore(settings.concurrency)

        async def current(t: Tracked, pointer: str, template_text: str) -> str | None:
            try:
                p = self.resolver.plan(parse(template_text), t.namespace)
                async with limit:
                    found = await self.resolver.resolve(p, not_before_ms=token)
                return self.resolver.uri(p, found.resolution, Flavor.for_group(t.kind.group, t.kind.plural))
            except (TemplateError, ResolutionError) as exc:
                await self._warn(t, pointer, exc)
                return None

        async def check(t: Tracked) -> bool:
            uris = await asyncio.gather(*(current(t, r.pointer, r.template) for r in t.refs))
            stale = any(u is not None and u != r.record.get("uri") for u, r in zip(uris, t.refs, strict=True))
            return stale and await self.touch(t, token)

        touched = sum(await asyncio.gather(*(check(t) for t in targets)))
        if models is None:
            POLL.observe(time.monotonic() - started)
        return touched

    async def touch(self, t: Tracked, token: int) -> bool:
        patch = {"metadata": {"annotations": {records.REFRESH: str(token)}}}
        delay = 0.2
        for attempt in range(5):
            try:
                await self.kube.merge_patch(t.kind, t.namespace, t.obj["metadata"]["name"], patch)
                TOUCHES.labels("ok").inc()
                log.info("touched %s (refresh %d)", t.describe(), token)
                return True
            except ApiError as exc:
                if exc.status == 404:
                    TOUCHES.labels("gone").inc()
                    return False
                if exc.status < 500 and exc.status not in (409, 429):
                    # a denial by the webhook (e.g. policy) will not pass on retry
                    TOUCHES.labels("refused").inc()
                    log.warning("touch of %s refused: %s", t.describe(), exc)
                    return False
            except OSError as exc:
                log.warning("touch of %s failed (attempt %d): %s", t.describe(), attempt + 1, exc)
            await asyncio.sleep(delay)
            delay *= 2
        TOUCHES.labels("error").inc()
        return False

    async def _warn(self, t: Tracked, pointer: str, exc: Exception) -> None:
        """A reference that no longer resolves keeps its version; say so, rate-limited."""
        key = (t.key, pointer)
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) < self.resolver.settings.reconciler.warning_interval_seconds:
            return
        self._warned[key] = now
        cause = exc.cause.value if isinstance(exc, ResolutionError) else Cause.INVALID.value
        message = f"{pointer}: keeping the current version: {exc}"[:1000]
        with contextlib.suppress(ApiError, OSError):
            await self.kube.event(
                t.obj, t.kind_name, "Warning", f"ModelReference{cause.title().replace('_', '')}", message
            )

    async def observe(self, kind: Kind, obj: dict[str, object]) -> None:
        tracked, changes = self.index.upsert(kind, dict(obj))
        INDEX_SIZE.set(len(self.index))
        await self._report(tracked, changes)

    async def _report(self, tracked: Tracked, changes: list[VersionChange]) -> None:
        """A ModelVersionChanged Event per changed reference, and the propagation lag."""
        for change in changes:
            if tracked.refresh_ms:
                LAG.observe(max(0.0, (now_ms() - tracked.refresh_ms) / 1000))
            with contextlib.suppress(ApiError, OSError):
                await self.kube.event(tracked.obj, tracked.kind_name, "Normal", "ModelVersionChanged", change.message())

    async def watch(self, kind: Kind) -> None:
        """List, compare, then follow the watch; relist and compare after a lost watch."""
        while True:
            try:
                listing = await self.kube.list(kind, SELECTOR)
                for tracked, changes in self.index.replace_kind(kind, listing.get("items", [])):
                    await self._report(tracked, changes)
                INDEX_SIZE.set(len(self.index))
                await self.compare()
                self.synced.add(kind)
                version = listing["metadata"]["resourceVersion"]
                while True:
                    async for event in self.kube.watch(kind, SELECTOR, version):
                        obj = event.get("object") or {}
                        version = (obj.get("metadata") or {}).get("resourceVersion", version)
                        if event["type"] in ("ADDED", "MODIFIED"):
                            await self.observe(kind, obj)
                        elif event["type"] == "DELETED":
                            self.index.remove(kind, obj)
                        elif event["type"] == "ERROR":
                            raise ApiError(int(obj.get("code", 500)), str(obj.get("message")))
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.status != 410:
                    log.warning("watch of %s: %s", kind.plural, exc)
                    await asyncio.sleep(1)
            except Exception as exc:
                log.warning("watch of %s failed: %s", kind.plural, exc)
                await asyncio.sleep(1)

    async def poll(self) -> None:
        interval = self.resolver.settings.reconciler.poll_interval_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                await self.compare()
            except Exception:
                log.exception("poll failed")

    async def lead(self, lease: LeaderLease) -> None:
        """Work only while holding the lease; stop the moment it is lost."""
        work: list[asyncio.Task[None]] = []
        renew = max(1.0, lease.duration / 3)
        try:
            while True:
                if await lease.try_acquire():
                    if not work:
                        log.info("leading as %s", lease.identity)
                        LEADER.set(1)
                        work = [asyncio.create_task(self.watch(k)) for k in self.kinds]
                        work.append(asyncio.create_task(self.poll()))
                elif work:
                    log.warning("lost the lease; standing by")
                    await cancel_tasks(work)
                    work = []
                    self.synced.clear()
                    LEADER.set(0)
                await asyncio.sleep(renew)
        finally:
            await cancel_tasks(work)
            LEADER.set(0)
            await lease.release()


async def cancel_tasks(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
