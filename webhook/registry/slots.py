"""Turns at one registry: at most ``limit`` lookups at once, waiters served round robin by review."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Hashable

from webhook import metrics


class Slots:
    """At most ``limit`` lookups at once to one registry; waiters served round robin by group.

    A group is one review (its deadline) or one outside call. Waiting here is not the
    registry's doing and never counts toward its circuit.
    """

    def __init__(self, registry: str, limit: int) -> None:
        self._free = limit
        # group -> its waiters; dict order is the rotation
        self._queues: dict[Hashable, deque[asyncio.Future[None]]] = {}
        self._waiting = metrics.REGISTRY_WAITING.labels(registry)
        self._wait = metrics.REGISTRY_WAIT.labels(registry)

    async def acquire(self, group: Hashable) -> None:
        if self._free > 0 and not self._queues:
            self._free -= 1
            self._wait.observe(0)
            return
        started = time.monotonic()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues.setdefault(group, deque())
        queue.append(waiter)
        self._waiting.inc()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot while being cancelled: pass it on
            elif self._queues.get(group) is queue:
                queue.remove(waiter)
                if not queue:
                    del self._queues[group]
            raise
        finally:
            self._waiting.dec()
        self._wait.observe(time.monotonic() - started)

    def release(self) -> None:
        while self._queues:
            group = next(iter(self._queues))
            queue = self._queues.pop(group)
            waiter = queue.popleft()
            if queue:
                self._queues[group] = queue  # to the back of the rotation
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
