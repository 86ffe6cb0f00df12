"""``modelpin reconcile``: when the registry changes, have affected objects re-admitted.

Change sources are MLflow webhooks (fast) and polling (the safety net, and the
only way to see stage changes). Either way the decision is the same: resolve
each reference as the webhook would, and touch an object whose recorded URI
differs with ``modelpin.io/refresh``; the apiserver re-admits it and the
webhook writes the new version.

Failure handling follows client-go: watches resume from their last
resourceVersion (bookmarks keep it recent); any lost watch relists and compares
the kind, with jittered backoff; leadership is held only within the renew
deadline, and touches stop with it. Errors are logged once per cause, and again
only when the cause changes or the call recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.metrics import INDEX_SIZE, LAG, LEADER, LEADERSHIP, POLL, POLL_CHANGED, SYNCED, TOUCHES
from webhook.reconcile.index import Index, Key, Tracked, VersionChange
from webhook.reconcile.kube import KUBE_ERRORS, ApiException, Kind, Kube, describe
from webhook.reconcile.leadership import LeaderLease
from webhook.registry.clients import RegisteredModel, Registry, RegistryError
from webhook.registry.resolver import Lookup, Plan, ResolutionError, Resolver, now_ms
from webhook.templating import record_annotations as records
from webhook.templating.causes import Cause
from webhook.templating.grammar import TemplateError, parse
from webhook.templating.uris import Flavor

log = logging.getLogger("modelpin.reconciler")

SELECTOR = f"{records.MANAGED}=true"
UNSERVED_RELIST_SECONDS = 60.0  # a kind whose CRD is not installed is listed again this often


class WorkDied(RuntimeError):
    """A watch or poll task ended on its own: a bug, not an outage; the process must restart."""


class Once:
    """Log a failure once per cause, and the recovery once."""

    def __init__(self, logger: logging.Logger) -> None:
        self.log = logger
        self._last: dict[Hashable, str] = {}

    def failed(self, what: Hashable, label: str, cause: str) -> None:
        if self._last.get(what) != cause:
            self._last[what] = cause
            self.log.warning("%s: %s", label, cause)

    def ok(self, what: Hashable, label: str) -> None:
        if self._last.pop(what, None) is not None:
            self.log.info("%s: recovered", label)


class Backoff:
    """Exponential, capped, with full jitter: replicas and kinds do not retry in step."""

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first = first
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.first * 2**self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class TokenBucket:
    """The client-side touch rate: ``rate`` per second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self.tokens = float(self.burst)
        self.updated = clock()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:  # first come, first served
            while True:
                now = self.clock()
                self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


def fingerprint(model: RegisteredModel | None) -> Hashable:
    """What polling compares between cycles: aliases, the latest version per stage, the update time."""
    if model is None:
        return None
    latest = sorted(
        (v.stage, v.version, v.status, v.source, tuple(sorted(v.tags.items()))) for v in model.latest_versions
    )
    return (tuple(sorted(model.aliases.items())), tuple(latest), model.last_updated_ms)


@dataclass(slots=True)
class Reconciler:
    resolver: Resolver
    kube: Kube
    kinds: list[Kind]
    index: Index = field(default_factory=Index)
    synced: set[Kind] = field(default_factory=set)  # kinds listed and compared since the last loss
    leading: bool = False
    fence: Callable[[], bool] = lambda: True  # False once leadership may have passed: no more touches
    bucket: TokenBucket | None = None
    errors: Once = field(default_factory=lambda: Once(log))
    _warned: dict[tuple[Key, str], float] = field(default_factory=dict)
    _fingerprints: dict[tuple[str, str], Hashable] = field(default_factory=dict)
    _retry: set[str] = field(default_factory=set)  # models whose compare could not finish
    _queued: dict[Key, list[int]] = field(default_factory=dict)  # touches waiting for the rate limit: [token]

    def __post_init__(self) -> None:
        if self.bucket is None:
            rc = self.resolver.settings.reconciler
            self.bucket = TokenBucket(rc.touch_rate_per_second, rc.touch_burst)

    # --- state -----------------------------------------------------------------------------------

    def is_synced(self) -> bool:
        return self.leading and len(self.synced) == len(self.kinds)

    def _publish(self) -> None:
        SYNCED.set(1 if self.is_synced() else 0)
        INDEX_SIZE.set(len(self.index))

    # --- compare and touch ----------------------------------------------------------------------

    async def compare(
        self, models: set[str] | None = None, kind: Kind | None = None, *, moving_only: bool = False
    ) -> int:
        """Touch every unpaused object whose recorded URI is no longer what the registry says.

        ``moving_only``: skip pinned references (name/7), as a poll does: their version cannot move.
        """
        started = time.monotonic()
        # The token is when the change was noticed, never earlier than the change itself:
        # MLflow's delivery timestamp has whole seconds, and a token before the change
        # would let the webhook serve a cache entry fetched just before it. An entry
        # fetched within the millisecond the change was noticed may predate it too, so
        # the token is the next millisecond, and lookups start once it has come.
        token = now_ms() + 1
        await asyncio.sleep(max(0.0, token / 1000 - time.time()))
        targets = [t for t in self.index.using(models) if not t.paused and (kind is None or t.kind == kind)]
        settings = self.resolver.settings.reconciler
        limit = asyncio.Semaphore(settings.concurrency)
        # One lookup per distinct reference in this compare. The resolver's cache is not enough:
        # with thousands of objects the compare outlasts the floating TTL, and an entry fetched
        # for the first object using a model has expired by the last (20,000 objects over 2,000
        # models made 18,000 lookups instead of 2,000).
        lookups: dict[tuple[str, str, str], asyncio.Task[Lookup]] = {}

        async def lookup(p: Plan) -> Lookup:
            async with limit:
                return await self.resolver.resolve(p, not_before_ms=token)

        async def current(t: Tracked, pointer: str, template_text: str) -> str | None:
            try:
                p = self.resolver.plan(parse(template_text), t.namespace)
                if moving_only and p.reference.selector.pinned:
                    return None
                task = lookups.get(p.key)
                if task is None:
                    task = lookups[p.key] = asyncio.ensure_future(lookup(p))
                found = await task
                return self.resolver.uri(p, found.resolution, Flavor.for_group(t.kind.group, t.kind.plural))
            except (TemplateError, ResolutionError) as exc:
                if isinstance(exc, ResolutionError) and exc.cause is Cause.UNAVAILABLE:
                    self._retry.update(r.model for r in t.refs)
                await self._warn(t, pointer, exc)
                return None

        async def check(t: Tracked) -> bool:
            uris = await asyncio.gather(*(current(t, r.pointer, r.template) for r in t.refs))
            stale = any(u is not None and u != r.record.get("uri") for u, r in zip(uris, t.refs, strict=True))
            return stale and await self.touch(t, token)

        touched = sum(await asyncio.gather(*(check(t) for t in targets)))
        if models is None and kind is None:
            POLL.observe(time.monotonic() - started)
        self._prune_warnings()
        return touched

    async def touch(self, t: Tracked, token: int) -> bool:
        queued = self._queued.get(t.key)
        if queued is not None:
            # MLflow sends two deliveries for a version created and aliased at once, and each
            # compare finds the same objects stale: one PATCH, with the newer token, serves both
            # (a mass move otherwise takes twice as long through the rate limit).
            queued[0] = max(queued[0], token)
            TOUCHES.labels("coalesced").inc()
            return True
        box = self._queued[t.key] = [token]
        try:
            return await self._touch(t, box)
        finally:
            if self._queued.get(t.key) is box:
                del self._queued[t.key]

    async def _touch(self, t: Tracked, box: list[int]) -> bool:
        backoff = Backoff(0.2, 5.0)
        assert self.bucket is not None
        for _ in range(5):
            await self.bucket.take()
            if self._queued.get(t.key) is box:
                # from here a newer compare touches on its own: this PATCH may already be on its way
                del self._queued[t.key]
            token = box[0]
            patch = {"metadata": {"annotations": {records.REFRESH: str(token)}}}
            if not self.fence():
                # leadership may already have passed to another replica: it relists and compares
                TOUCHES.labels("not_leading").inc()
                return False
            try:
                await self.kube.merge_patch(t.kind, t.namespace, t.name, patch)
                TOUCHES.labels("ok").inc()
                self.errors.ok("touch", "touches")
                log.info("touched %s (refresh %d)", t.describe(), token)
                return True
            except ApiException as exc:
                if exc.status == 404:
                    TOUCHES.labels("gone").inc()
                    return False
                if exc.status < 500 and exc.status not in (409, 429):
                    # a denial (webhook, policy, RBAC) will not pass on retry
                    TOUCHES.labels("refused").inc()
                    log.warning("touch of %s refused: %s", t.describe(), describe(exc))
                    return False
                self.errors.failed("touch", "touches failing", describe(exc))
            except KUBE_ERRORS as exc:
                self.errors.failed("touch", "touches failing", describe(exc))
            await asyncio.sleep(backoff.next_delay())
        TOUCHES.labels("error").inc()
        self._retry.update(r.model for r in t.refs)  # the next poll tries again
        return False

    async def _event(self, t: Tracked, event_type: str, reason: str, message: str) -> None:
        try:
            await self.kube.event(t.involved(), event_type, reason, message)
            self.errors.ok("event", "events")
        except KUBE_ERRORS as exc:
            self.errors.failed("event", "recording events failing", describe(exc))

    async def _warn(self, t: Tracked, pointer: str, exc: Exception) -> None:
        """A reference that no longer resolves keeps its version; say so, rate-limited."""
        key = (t.key, pointer)
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) < self.resolver.settings.reconciler.warning_interval_seconds:
            return
        self._warned[key] = now
        cause = exc.cause.value if isinstance(exc, ResolutionError) else Cause.INVALID.value
        message = f"{pointer}: keeping the current version: {exc}"[:1000]
        await self._event(t, "Warning", f"ModelReference{cause.title().replace('_', '')}", message)

    def _prune_warnings(self) -> None:
        horizon = time.monotonic() - self.resolver.settings.reconciler.warning_interval_seconds
        for key in [k for k, at in self._warned.items() if at < horizon or k[0] not in self.index]:
            del self._warned[key]

    # --- the index: list, watch ------------------------------------------------------------------

    async def observe(self, kind: Kind, obj: Mapping[str, Any]) -> None:
        tracked, changes = self.index.upsert(kind, obj)
        INDEX_SIZE.set(len(self.index))
        await self._report(tracked, changes)

    async def _report(self, tracked: Tracked, changes: list[VersionChange]) -> None:
        """A ModelVersionChanged Event per changed reference, and the propagation lag."""
        for change in changes:
            if tracked.refresh_ms:
                LAG.observe(max(0.0, (now_ms() - tracked.refresh_ms) / 1000))
            await self._event(tracked, "Normal", "ModelVersionChanged", change.message())

    async def relist(self, kind: Kind) -> str | None:
        """List every page; the listed objects are all there is. None when the kind is not served."""
        listed: set[Key] = set()
        version = ""
        try:
            async for items, page_version in self.kube.list_pages(kind, SELECTOR):
                version = page_version
                for obj in items:
                    tracked, changes = self.index.upsert(kind, obj)
                    listed.add(tracked.key)
                    await self._report(tracked, changes)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        self.index.retain(kind, listed)
        self._publish()
        return version

    async def _watch_once(self, kind: Kind, version: str) -> str:
        """Follow one watch until the server ends it; returns the last resourceVersion seen."""
        async for event in self.kube.watch(kind, SELECTOR, version):
            obj = event.get("raw_object") or event.get("object") or {}
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            kind_of_event = event.get("type")
            if kind_of_event in ("ADDED", "MODIFIED"):
                await self.observe(kind, obj)
            elif kind_of_event == "DELETED":
                self.index.remove(kind, obj)
                INDEX_SIZE.set(len(self.index))
        return version

    async def follow(self, kind: Kind) -> None:
        """List, compare, then follow the watch; relist and compare after a lost watch."""
        backoff = Backoff()
        label = f"watch of {kind.plural}"
        while True:
            try:
                version = await self.relist(kind)
                if version is None:
                    # not installed (yet): nothing to manage, and no reason to be unready
                    self.errors.failed(("watch", kind), label, "the apiserver does not serve this kind")
                    self.synced.add(kind)
                    self._publish()
                    await asyncio.sleep(UNSERVED_RELIST_SECONDS)
                    continue
                await self.compare(kind=kind)
                self.synced.add(kind)
                self._publish()
                self.errors.ok(("watch", kind), label)
                backoff.reset()
                while True:
                    version = await self._watch_once(kind, version)
            except ApiException as exc:
                self.synced.discard(kind)
                self._publish()
                if exc.status == 410:
                    log.info("%s: resourceVersion expired, listing again", label)
                    continue
                self.errors.failed(("watch", kind), label, describe(exc))
            except KUBE_ERRORS as exc:
                self.synced.discard(kind)
                self._publish()
                self.errors.failed(("watch", kind), label, describe(exc))
            await asyncio.sleep(backoff.next_delay())

    # --- polling ---------------------------------------------------------------------------------

    def _floating(self) -> dict[str, set[str]]:
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
        changed, self._retry = set(self._retry), set()
        fingerprints: dict[tuple[str, str], Hashable] = {}
        for registry, models in self._floating().items():
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
        return await self.compare(changed, moving_only=True)

    async def poll(self) -> None:
        settings = self.resolver.settings.reconciler
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(settings.poll_interval_seconds)
            if time.monotonic() - last_full >= settings.full_compare_interval_seconds:
                last_full = time.monotonic()
                await self.changed_models()  # the baseline first, so nothing moving meanwhile is missed
                await self.compare()
            else:
                await self.poll_once()

    # --- leadership ------------------------------------------------------------------------------

    async def lead(self, lease: LeaderLease) -> None:
        """Work only while holding the lease; stop when it cannot be renewed within the deadline.

        Returns only by cancellation; raises WorkDied when a work task ends on its own.
        """
        work: list[asyncio.Task[None]] = []
        self.fence = lease.valid
        try:
            while True:
                held = await lease.try_acquire_or_renew()
                if held and not work:
                    lease.leader = True
                    self.leading = True
                    log.info("leading as %s", lease.identity)
                    LEADER.set(1)
                    LEADERSHIP.labels("acquired").inc()
                    work = [asyncio.create_task(self.follow(k), name=f"follow {k.plural}") for k in self.kinds]
                    work.append(asyncio.create_task(self.poll(), name="poll"))
                elif work and not held:
                    taken = lease.reachable and lease.holder not in ("", lease.identity)
                    if taken or not lease.valid():
                        why = f"taken by {lease.holder}" if taken else "not renewed within the renew deadline"
                        log.warning("lost the lease (%s); standing by", why)
                        LEADERSHIP.labels("lost").inc()
                        lease.leader = False
                        await self._stand_down(work)
                        work = []
                period = lease.retry_period if work else lease.retry_period * random.uniform(1.0, 1.2)
                if work:
                    done, _ = await asyncio.wait(work, timeout=period, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        cause = task.exception() if not task.cancelled() else None
                        raise WorkDied(f"{task.get_name()} ended: {cause!r}") from cause
                else:
                    await asyncio.sleep(period)
        finally:
            await self._stand_down(work)
            if lease.leader:
                LEADERSHIP.labels("released").inc()
                await lease.release()

    async def _stand_down(self, work: list[asyncio.Task[None]]) -> None:
        """Stop all work; a new term starts from a relist of every kind."""
        await cancel_tasks(work)
        self.leading = False
        self.synced.clear()
        LEADER.set(0)
        self._publish()


async def cancel_tasks(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _search_all(client: Registry) -> list[RegisteredModel]:
    """``Resolver.call``'s operation for a poll: the registry's own listing of every model."""
    return await client.search_registered_models()
