"""The touch: a ``modelpin.io/refresh`` token written on a stale object, so the apiserver re-admits it.

Touches go out at a client-side rate (a mass move cannot flood the apiserver); a
touch still waiting for the rate limit serves a later compare of the same object
with the newer token; none goes out once leadership may have passed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from webhook.metrics import TOUCHES
from webhook.reconcile.index import Key, Tracked
from webhook.reconcile.kube import KUBE_ERRORS, ApiException, Kube, describe
from webhook.reconcile.loops import Backoff, Once
from webhook.templating import record_annotations as records

log = logging.getLogger("modelpin.reconciler")


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
class Toucher:
    kube: Kube
    bucket: TokenBucket
    errors: Once
    retry: set[str]  # models the next poll compares again (shared with the poller)
    fence: Callable[[], bool] = lambda: True  # False once leadership may have passed: no more touches
    _queued: dict[Key, list[int]] = field(default_factory=dict)  # touches waiting for the rate limit: [token]

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
        self.retry.update(r.model for r in t.refs)  # the next poll tries again
        return False
