"""``modelpin reconcile``: when the registry changes, have affected objects re-admitted.

Change sources are MLflow webhooks (fast) and polling (the safety net, and the
only way to see stage changes). Either way the decision is the same, and it is
made here: resolve each reference as the webhook would, and touch an object
whose recorded URI differs with ``modelpin.io/refresh``; the apiserver
re-admits it and the webhook writes the new version.

The steps live in their own modules: ``watching`` keeps the index current,
``polling`` finds models that moved, ``touching`` writes the token, ``events``
records what happened on the objects, ``leadership`` holds the Lease. This
module composes them: ``compare`` decides, ``lead`` runs the work only while
the lease is held (client-go's semantics: touches stop with leadership).
Errors are logged once per cause, and again only when the cause changes or the
call recovers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

from webhook.metrics import INDEX_SIZE, LEADER, LEADERSHIP, POLL, SYNCED
from webhook.reconcile.events import Events
from webhook.reconcile.index import Index, Key, Tracked
from webhook.reconcile.kube import Kind, Kube
from webhook.reconcile.leadership import LeaderLease
from webhook.reconcile.loops import Once, WorkDied, cancel_tasks
from webhook.reconcile.polling import Poller
from webhook.reconcile.touching import TokenBucket, Toucher
from webhook.reconcile.watching import Watcher
from webhook.registry.resolver import Lookup, Plan, ResolutionError, Resolver, now_ms
from webhook.templating.causes import Cause
from webhook.templating.grammar import TemplateError, parse
from webhook.templating.uris import Flavor

log = logging.getLogger("modelpin.reconciler")


@dataclass(slots=True)
class Reconciler:
    resolver: Resolver
    kube: Kube
    kinds: list[Kind]
    index: Index = field(default_factory=Index)
    synced: set[Kind] = field(default_factory=set)  # kinds listed and compared since the last loss
    leading: bool = False
    bucket: TokenBucket | None = None  # the touch rate; from the settings when not given
    errors: Once = field(default_factory=lambda: Once(log))
    events: Events = field(init=False)
    watcher: Watcher = field(init=False)
    poller: Poller = field(init=False)
    touches: Toucher = field(init=False)

    def __post_init__(self) -> None:
        rc = self.resolver.settings.reconciler
        bucket = self.bucket or TokenBucket(rc.touch_rate_per_second, rc.touch_burst)
        self.events = Events(self.kube, self.errors, rc.warning_interval_seconds)
        self.poller = Poller(
            self.resolver,
            self.index,
            self.errors,
            compare_moving=lambda models: self.compare(models, moving_only=True),
            compare_all=self.compare,
        )
        self.touches = Toucher(self.kube, bucket, self.errors, self.poller.retry, recheck=self.recheck)
        self.watcher = Watcher(
            self.kube,
            self.index,
            self.events,
            self.errors,
            self.synced,
            self.touches,
            compare=lambda kind: self.compare(kind=kind),
            publish=self._publish,
        )

    # --- state -----------------------------------------------------------------------------------

    def is_synced(self) -> bool:
        return self.leading and len(self.synced) == len(self.kinds)

    def _publish(self) -> None:
        SYNCED.set(1 if self.is_synced() else 0)
        INDEX_SIZE.set(len(self.index))

    # --- compare ---------------------------------------------------------------------------------

    async def recheck(self, t: Tracked) -> int:
        """Compare one object again, as it is indexed now (a touch that did not move it is retried so)."""
        return await self.compare({r.model for r in t.refs}, only=t.key)

    async def compare(
        self,
        models: set[str] | None = None,
        kind: Kind | None = None,
        *,
        moving_only: bool = False,
        only: Key | None = None,
    ) -> int:
        """Touch every unpaused object whose recorded URI is no longer what the registry says.

        ``moving_only``: skip pinned references (name/7), as a poll does: their version cannot move.
        ``only``: this object alone.
        """
        started = time.monotonic()
        # The token is when the change was noticed, never earlier than the change itself:
        # MLflow's delivery timestamp has whole seconds, and a token before the change
        # would let the webhook serve a cache entry fetched just before it. An entry
        # fetched within the millisecond the change was noticed may predate it too, so
        # the token is the next millisecond, and lookups start once it has come.
        token = now_ms() + 1
        await asyncio.sleep(max(0.0, token / 1000 - time.time()))
        targets = [
            t
            for t in self.index.using(models)
            if not t.paused and (kind is None or t.kind == kind) and (only is None or t.key == only)
        ]
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
                    self.poller.retry.update(r.model for r in t.refs)
                await self.events.warn(t, pointer, exc)
                return None

        async def check(t: Tracked) -> bool:
            uris = await asyncio.gather(*(current(t, r.pointer, r.template) for r in t.refs))
            stale = {
                r.pointer: r.record.get("uri", "")
                for u, r in zip(uris, t.refs, strict=True)
                if u is not None and u != r.record.get("uri")
            }
            if not stale:
                if None not in uris:
                    self.touches.current(t.key)
                return False
            return await self.touches.touch(t, token, stale)

        touched = sum(await asyncio.gather(*(check(t) for t in targets)))
        if models is None and kind is None and only is None:
            POLL.observe(time.monotonic() - started)
        self.events.prune(self.index)
        return touched

    # --- leadership ------------------------------------------------------------------------------

    async def lead(self, lease: LeaderLease) -> None:
        """Work only while holding the lease; stop when it cannot be renewed within the deadline.

        Returns only by cancellation; raises WorkDied when a work task ends on its own.
        """
        work: list[asyncio.Task[None]] = []
        self.touches.validity = lease.remaining
        try:
            while True:
                held = await lease.try_acquire_or_renew()
                if held and not work:
                    lease.leader = True
                    self.leading = True
                    log.info("leading as %s", lease.identity)
                    LEADER.set(1)
                    LEADERSHIP.labels("acquired").inc()
                    work = [asyncio.create_task(self.watcher.follow(k), name=f"follow {k.plural}") for k in self.kinds]
                    work.append(asyncio.create_task(self.poller.poll(), name="poll"))
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
        await self.touches.stop()
        self.leading = False
        self.synced.clear()
        LEADER.set(0)
        self._publish()
