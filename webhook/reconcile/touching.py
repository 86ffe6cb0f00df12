"""The touch: a ``modelpin.io/refresh`` token written on a stale object, so the apiserver re-admits it.

Touches go out at a client-side rate (a mass move cannot flood the apiserver); a
touch still waiting for the rate limit serves a later compare of the same object
with the newer token; none goes out once leadership may have passed, and none
outlives it (each PATCH's deadline is what is left of the lease).

An accepted PATCH is not yet a moved object: with the webhook unreachable and
failurePolicy Ignore, the apiserver stores the token and keeps the old URI. A
touch is done when the watch shows the object's recorded URI changed; when it
shows the token stored with the old URI, or shows nothing in time, or the PATCH
is refused while the webhook is down (failurePolicy Fail), the object is compared
again after a jittered, capped backoff, and touched again if still stale.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from webhook.metrics import TOUCHES
from webhook.reconcile.index import Key, Tracked
from webhook.reconcile.kube import KUBE_ERRORS, ApiException, Kube, describe
from webhook.reconcile.loops import Backoff, Once, cancel_tasks
from webhook.templating import record_annotations as records

log = logging.getLogger("modelpin.reconciler")

CONFIRM_SECONDS = 30.0  # how long a touch waits for the watch to show its object re-admitted
RETRIES = 8  # rounds of compare-and-touch for one object before it is left to the next poll

Outcome = Literal["confirmed", "unconfirmed", "gone", "superseded"]


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


@dataclass(slots=True)
class Queued:
    """A touch waiting for the rate limit: later compares of the object raise its token and add their fields."""

    token: int
    stale: dict[str, str]


@dataclass(slots=True)
class Pending:
    """A touch sent and not yet seen through: the stale fields' old URIs, and the token written."""

    stale: Mapping[str, str]  # pointer -> the URI recorded before the touch
    token: int
    outcome: asyncio.Future[Outcome]


@dataclass(slots=True)
class Toucher:
    kube: Kube
    bucket: TokenBucket
    errors: Once
    retry: set[str]  # models the next poll compares again (shared with the poller)
    # this object compared again (and touched if still stale); returns the touches made
    recheck: Callable[[Tracked], Awaitable[int]]
    # seconds of leadership left; 0 once it may have passed: no more touches
    validity: Callable[[], float] = lambda: math.inf
    confirm_seconds: float = CONFIRM_SECONDS
    retry_first: float = 1.0  # the first wait before touching an unconfirmed object again
    retry_cap: float = 60.0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # confirmations and retries in flight
    _queued: dict[Key, Queued] = field(default_factory=dict)  # touches waiting for the rate limit
    _pending: dict[Key, Pending] = field(default_factory=dict)
    _backoffs: dict[Key, Backoff] = field(default_factory=dict)  # objects being retried, and how often

    async def touch(self, t: Tracked, token: int, stale: Mapping[str, str]) -> bool:
        """Have ``t`` re-admitted; ``stale``: the pointers whose recorded URI the registry no longer names."""
        queued = self._queued.get(t.key)
        if queued is not None:
            # MLflow sends two deliveries for a version created and aliased at once, and each
            # compare finds the same objects stale: one PATCH, with the newer token, serves both
            # (a mass move otherwise takes twice as long through the rate limit).
            queued.token = max(queued.token, token)
            queued.stale.update(stale)
            TOUCHES.labels("coalesced").inc()
            return True
        box = self._queued[t.key] = Queued(token, dict(stale))
        try:
            return await self._touch(t, box)
        finally:
            if self._queued.get(t.key) is box:
                del self._queued[t.key]

    async def _touch(self, t: Tracked, box: Queued) -> bool:
        backoff = Backoff(0.2, 5.0)
        for _ in range(5):
            await self.bucket.take()
            if self._queued.get(t.key) is box:
                # from here a newer compare touches on its own: this PATCH may already be on its way
                del self._queued[t.key]
            token = box.token
            patch = {"metadata": {"annotations": {records.REFRESH: str(token)}}}
            left = self.validity()
            if left <= 0:
                # leadership may already have passed to another replica: it relists and compares
                TOUCHES.labels("not_leading").inc()
                return False
            # expected before the PATCH is sent: the watch may show the result before the answer comes
            pending = self._expect(t.key, box.stale, token)
            try:
                # a touch must not outlive leadership: the deadline is what is left of it
                await self.kube.merge_patch(t.kind, t.namespace, t.name, patch, deadline=min(self.kube.timeout, left))
            except ApiException as exc:
                self._settle(t.key, pending, "superseded")
                if exc.status == 404:
                    TOUCHES.labels("gone").inc()
                    return False
                if exc.status < 500 and exc.status not in (409, 429):
                    # a denial (webhook, policy, RBAC) will not pass on retry
                    TOUCHES.labels("refused").inc()
                    log.warning("touch of %s refused: %s", t.describe(), describe(exc))
                    return False
                # 5xx: among others, the webhook unreachable under failurePolicy Fail
                self.errors.failed("touch", "touches failing", describe(exc))
            except KUBE_ERRORS as exc:
                self._settle(t.key, pending, "superseded")
                self.errors.failed("touch", "touches failing", describe(exc))
            else:
                TOUCHES.labels("ok").inc()
                self.errors.ok("touch", "touches")
                log.info("touched %s (refresh %d)", t.describe(), token)
                self._spawn(self._confirm(t, pending), f"confirm {t.describe()}")
                return True
            await asyncio.sleep(backoff.next_delay())
        TOUCHES.labels("error").inc()
        self._spawn(self._again(t), f"retry {t.describe()}")
        return False

    # --- confirmation ----------------------------------------------------------------------------

    def _expect(self, key: Key, stale: Mapping[str, str], token: int) -> Pending:
        earlier = self._pending.get(key)
        if earlier is not None:
            self._settle(key, earlier, "superseded")  # a newer touch of the same object takes over
        pending = self._pending[key] = Pending(stale, token, asyncio.get_running_loop().create_future())
        return pending

    def _settle(self, key: Key, pending: Pending, outcome: Outcome) -> None:
        if not pending.outcome.done():
            pending.outcome.set_result(outcome)
        if self._pending.get(key) is pending:
            del self._pending[key]

    def seen(self, t: Tracked) -> None:
        """The watch (or a relist) shows ``t`` as stored now: settles a touch waiting for it."""
        pending = self._pending.get(t.key)
        if pending is None:
            return
        recorded = {r.pointer: r.record.get("uri") for r in t.refs}
        if t.held(dt.datetime.now(dt.UTC)) or all(
            recorded.get(pointer) != old for pointer, old in pending.stale.items()
        ):
            self._settle(t.key, pending, "confirmed")
        elif t.refresh_ms >= pending.token:
            # admitted with the token and without a new URI: the webhook did not see it
            self._settle(t.key, pending, "unconfirmed")
        # else an event from before the touch: keep waiting

    def gone(self, key: Key) -> None:
        pending = self._pending.get(key)
        if pending is not None:
            self._settle(key, pending, "gone")
        self._backoffs.pop(key, None)

    async def _confirm(self, t: Tracked, pending: Pending) -> None:
        try:
            outcome: Outcome = await asyncio.wait_for(asyncio.shield(pending.outcome), self.confirm_seconds)
        except TimeoutError:
            outcome = "unconfirmed"
        self._settle(t.key, pending, outcome)
        if outcome == "confirmed":
            TOUCHES.labels("confirmed").inc()
            self._backoffs.pop(t.key, None)
            self.errors.ok("confirm", "touched objects re-admitted")
        elif outcome == "unconfirmed":
            TOUCHES.labels("unconfirmed").inc()
            # once per outage, not once per object: a mass move would log thousands of lines
            self.errors.failed(
                "confirm", "touched objects not re-admitted", "still at the old URI (is the webhook reachable?)"
            )
            log.info("%s: still at its old URI after refresh %d; trying again later", t.describe(), pending.token)
            await self._again(t)

    async def _again(self, t: Tracked) -> None:
        """Compare ``t`` again after a jittered, capped backoff; after ``RETRIES`` rounds, leave it to the next poll."""
        backoff = self._backoffs.setdefault(t.key, Backoff(self.retry_first, self.retry_cap))
        if backoff.attempt >= RETRIES:
            del self._backoffs[t.key]
            TOUCHES.labels("abandoned").inc()
            log.warning("%s: not re-admitted after %d touches; the next poll tries again", t.describe(), RETRIES)
            self.retry.update(r.model for r in t.refs)
            return
        await asyncio.sleep(backoff.next_delay())
        TOUCHES.labels("retried").inc()
        await self.recheck(t)

    def current(self, key: Key) -> None:
        """A compare found the object at the registry's version: whatever retries it had are over."""
        self._backoffs.pop(key, None)

    def _spawn(self, work: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(self._guarded(work))
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _guarded(self, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:  # one object's retry must not take the others down
            log.exception("touch follow-up failed")

    async def stop(self) -> None:
        """Leadership ends: drop every confirmation and retry; the next term compares everything."""
        await cancel_tasks(list(self.tasks))
        for key, pending in list(self._pending.items()):
            self._settle(key, pending, "superseded")
        self._backoffs.clear()
        self._queued.clear()
