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
import datetime as dt
import logging
import random
import time
from dataclasses import dataclass, field

from webhook.metrics import INDEX_SIZE, LEADER, LEADERSHIP, POLL, SYNCED
from webhook.reconcile.events import Events
from webhook.reconcile.gauges import StateGauges
from webhook.reconcile.index import Index, Key, Tracked
from webhook.reconcile.kube import Kind, Kube
from webhook.reconcile.leadership import LeaderLease
from webhook.reconcile.loops import Once, WorkDied, cancel_tasks
from webhook.reconcile.polling import Poller
from webhook.reconcile.rollout_driver import RolloutDriver, record
from webhook.reconcile.states import Lookup as Named
from webhook.reconcile.states import missing_tags
from webhook.reconcile.touching import TokenBucket, Toucher
from webhook.reconcile.watching import Watcher
from webhook.registry.clients import ModelVersion
from webhook.registry.resolver import Plan, ResolutionError, Resolver, now_ms
from webhook.templating.causes import Cause
from webhook.templating.grammar import TemplateError, parse
from webhook.templating.uris import Flavor

log = logging.getLogger("modelpin.reconciler")

HOLD_CHECK_SECONDS = 1.0  # how often hold expiries are checked (a handful of indexed objects each time)


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
    gauges: StateGauges = field(init=False)
    rollouts: RolloutDriver = field(init=False)  # objects with a rollout policy move through it
    # (object, the hold's until) -> expiry: holds whose end has been dealt with
    _expired: dict[tuple[Key, str | None], dt.datetime] = field(default_factory=dict)
    _term_started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __post_init__(self) -> None:
        rc = self.resolver.settings.reconciler
        bucket = self.bucket or TokenBucket(rc.touch_rate_per_second, rc.touch_burst)
        self.events = Events(self.kube, self.errors, rc.warning_interval_seconds)
        self.gauges = StateGauges(self.resolver)
        self.rollouts = RolloutDriver(self.kube, self.index, self.events, self.resolver.settings, self.errors)
        self.poller = Poller(
            self.resolver,
            self.index,
            self.errors,
            compare_moving=lambda models: self.compare(models, moving_only=True),
            compare_all=self.compare,
            publish=self.publish_states,
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
        moves: dict[Key, list[str]] | None = None,
    ) -> int:
        """Touch every object not held whose recorded URI is no longer what the registry says; how many were.

        ``moving_only``: skip pinned references (name/7), as a poll does: their version cannot move.
        ``only``: this object alone. A move to a version the namespace's ``require_tags`` refuse
        is not made (one Warning Event per object and version). ``moves``, if given, gets each
        touched object's moves (``iris 1 -> 3``).
        """
        started = time.monotonic()
        # The token is when the change was noticed, never earlier than the change itself:
        # MLflow's delivery timestamp has whole seconds, and a token before the change
        # would let the webhook serve a cache entry fetched just before it. An entry
        # fetched within the millisecond the change was noticed may predate it too, so
        # the token is the next millisecond, and lookups start once it has come.
        token = now_ms() + 1
        await asyncio.sleep(max(0.0, token / 1000 - time.time()))
        now = dt.datetime.now(dt.UTC)
        targets = [
            t
            for t in self.index.using(models)
            if not t.held(now) and (kind is None or t.kind == kind) and (only is None or t.key == only)
        ]
        settings = self.resolver.settings.reconciler
        # Every field planned first, then one lookup per distinct reference in this compare. The
        # resolver's cache is not enough: with thousands of objects the compare outlasts the floating
        # TTL, and an entry fetched for the first object using a model has expired by the last
        # (20,000 objects over 2,000 models made 18,000 lookups instead of 2,000).
        planned: dict[Key, list[Plan | TemplateError | ResolutionError | None]] = {}
        for t in targets:
            planned[t.key] = [self._plan(t, r.template, moving_only=moving_only) for r in t.refs]
        found = await self.resolver.resolve_many(
            (p for plans in planned.values() for p in plans if isinstance(p, Plan)),
            not_before_ms=token,
            limit=settings.concurrency,
        )
        for key, result in found.items():
            if isinstance(result, ResolutionError):
                self.gauges.named[key] = Named(None, str(result))
            else:
                self.gauges.named[key] = Named(result.resolution.version)

        async def current(
            t: Tracked, pointer: str, p: Plan | TemplateError | ResolutionError | None
        ) -> tuple[str, Plan, ModelVersion] | None:
            if p is None:
                return None  # a pinned reference in a poll: its version cannot move
            failure: TemplateError | ResolutionError
            if isinstance(p, Plan):
                answer = found[p.key]
                try:
                    if isinstance(answer, ResolutionError):
                        failure = answer  # shared by every field naming the reference: not raised again
                    else:
                        flavor = Flavor.for_group(t.kind.group, t.kind.plural)
                        return self.resolver.uri(p, answer.resolution, flavor), p, answer.resolution.version
                except ResolutionError as exc:
                    failure = exc
            else:
                failure = p
            if isinstance(failure, ResolutionError) and failure.cause is Cause.UNAVAILABLE:
                self.poller.retry.update(r.model for r in t.refs)
            await self.events.warn(t, pointer, failure)
            return None

        async def check(t: Tracked) -> list[str] | None:
            answers = await asyncio.gather(
                *(current(t, r.pointer, p) for r, p in zip(t.refs, planned[t.key], strict=True))
            )
            required = self.resolver.settings.policy(t.namespace).require_tags
            stale: dict[str, str] = {}
            named: dict[str, dict[str, str]] = {}  # pointer -> the record of what the registry names
            made: list[str] = []
            for answer, r in zip(answers, t.refs, strict=True):
                if answer is None or answer[0] == r.record.get("uri"):
                    continue
                _, p, version = answer
                running = r.record.get("version", "")
                lacking = missing_tags(version, required)
                if lacking:
                    message = (
                        f"{p.reference} names version {version.version}, which lacks {', '.join(lacking)} "
                        f"required in namespace {t.namespace}; keeping version {running}"
                    )
                    await self.events.gated(t, r.pointer, version.version, message)
                    self.poller.retry.add(r.model)  # the next poll looks again: a tag set need not change a search
                    continue
                stale[r.pointer] = r.record.get("uri", "")
                named[r.pointer] = record(p, version, answer[0])
                made.append(f"{p.reference.name} {running} -> {version.version}")
            if not stale:
                if None not in answers:
                    self.touches.current(t.key)
                return None
            if self.rollouts.governs(t):
                return made if await self.rollouts.moved(t, named) else None
            return made if await self.touches.touch(t, token, stale) else None

        results = await asyncio.gather(*(check(t) for t in targets))
        touched = {t.key: made for t, made in zip(targets, results, strict=True) if made is not None}
        if models is None and kind is None and only is None:
            POLL.observe(time.monotonic() - started)
        self.events.prune(self.index)
        self.publish_states()
        if moves is not None:
            moves.update(touched)
        return len(touched)

    def _plan(
        self, t: Tracked, template_text: str, *, moving_only: bool
    ) -> Plan | TemplateError | ResolutionError | None:
        """The field's plan, or why it has none; None for a pinned reference when only moving ones count."""
        try:
            p = self.resolver.plan(parse(template_text), t.namespace)
        except (TemplateError, ResolutionError) as exc:
            return exc
        return None if moving_only and p.reference.selector.pinned else p

    def publish_states(self) -> None:
        """The state gauges from the index and the last lookups; fields never compared are compared next poll."""
        if self.leading:
            self.poller.retry.update(self.gauges.publish(self.index, dt.datetime.now(dt.UTC)))

    # --- holds -----------------------------------------------------------------------------------

    async def expire_holds(self) -> None:
        """Each hold that ended since this term began: an Event, and the object moved to what the registry names."""
        now = dt.datetime.now(dt.UTC)
        for t in self.index.holding():
            expiry = t.hold.expiry if t.hold is not None else None
            if t.hold is None or expiry is None or expiry > now:
                continue
            marker = (t.key, t.hold.until)
            if marker in self._expired:
                continue
            self._expired[marker] = expiry
            if expiry < self._term_started or t.paused:
                # ended before this term (the term's first compare moved it) or still paused: nothing to say
                continue
            moved: dict[Key, list[str]] = {}
            await self.compare({r.model for r in t.refs}, only=t.key, moves=moved)
            moves = moved.get(t.key)
            told = f"moving {', '.join(moves)}" if moves else "the registry names the versions running"
            await self.events.record(t, "Normal", "HoldExpired", f"hold expired (reason: {t.hold.reason}); {told}")
        for marker in [m for m in self._expired if not self._holds_still(m)]:
            del self._expired[marker]

    def _holds_still(self, marker: tuple[Key, str | None]) -> bool:
        t = self.index.get(marker[0])
        return t is not None and t.hold is not None and t.hold.until == marker[1]

    async def follow_holds(self) -> None:
        """Hold expiries checked every second: an object moves on when its hold ends, not at the next poll."""
        while True:
            await asyncio.sleep(HOLD_CHECK_SECONDS)
            await self.expire_holds()

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
                    self._term_started = dt.datetime.now(dt.UTC)
                    log.info("leading as %s", lease.identity)
                    LEADER.set(1)
                    LEADERSHIP.labels("acquired").inc()
                    work = [asyncio.create_task(self.watcher.follow(k), name=f"follow {k.plural}") for k in self.kinds]
                    work.append(asyncio.create_task(self.poller.poll(), name="poll"))
                    work.append(asyncio.create_task(self.follow_holds(), name="hold expiries"))
                    work.append(asyncio.create_task(self.rollouts.follow(), name="rollouts"))
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
        self.gauges.clear()
        LEADER.set(0)
        self._publish()
