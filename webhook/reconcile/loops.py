"""What the reconciler's long-running loops share: failure logging, backoff, and stopping tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Hashable


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


async def cancel_tasks(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
