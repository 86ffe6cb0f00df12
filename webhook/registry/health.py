"""Per-registry health: a small circuit breaker, so a registry that is down is not hammered.

Closed: calls go through. After ``failure_threshold`` consecutive failed calls it
opens: no call goes to the registry for an interval, and callers answer from
the cache or with 503 at once. When the interval ends, the first caller is let
through as a probe (half-open) while the others keep answering without it; the
probe's success closes the circuit, its failure opens it again for a longer
interval. Callers that find the probe out may wait for its verdict (``settled``)
rather than fail at once. Each opening starts a new epoch: a call's verdict counts
for the circuit only if the call started in the current epoch, so a success from
before the outage cannot close it. Intervals grow by ``backoff_multiplier`` up to ``max_open_seconds``
and are jittered, so replicas that saw the same outage do not probe in step.
The streak of intervals only resets once the registry has stayed healthy for
``max_open_seconds``: a registry that flaps keeps being given room.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from webhook import metrics
from webhook.config import RegistryHealthConfig

log = logging.getLogger("modelpin.registry")


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# modelpin_registry_circuit_state's values
STATE_VALUE = {State.CLOSED: 0, State.OPEN: 1, State.HALF_OPEN: 2}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What ``/readyz`` and the reconciler see of one registry."""

    registry: str
    state: State
    consecutive_failures: int
    last_failure: str | None  # the kind of the last failed call (never its text: that goes to the log)
    retry_in_seconds: float  # until the next probe may go; 0 when closed or probing

    @property
    def up(self) -> bool:
        return self.state is State.CLOSED

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "consecutive_failures": self.consecutive_failures,
            "last_failure": self.last_failure,
            "retry_in_seconds": round(self.retry_in_seconds, 3),
        }


class RegistryHealth:
    def __init__(
        self,
        name: str,
        config: RegistryHealthConfig,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self.config = config
        self._clock = clock
        self._rng = rng
        self.state = State.CLOSED
        self.failures = 0
        self.last_failure: str | None = None
        self._retry_at = 0.0
        self._probe_started = 0.0
        self._streak = 0  # intervals opened since the registry was last healthy for a while
        self._closed_at = -float("inf")
        self.epoch = 0  # openings so far: calls remember it, and only current-epoch verdicts move the circuit
        self._verdict: asyncio.Future[None] | None = None  # set when the probe out now settles
        self._publish()

    def allow(self) -> bool:
        """Whether a call may go to the registry now; the first caller after an interval becomes the probe."""
        if self.state is State.CLOSED or not self.config.enabled:
            return True
        now = self._clock()
        if self.state is State.OPEN:
            if now < self._retry_at:
                return False
        elif now - self._probe_started < self.config.max_open_seconds:
            return False  # a probe is out; one at a time (a lost probe is replaced after a while)
        self.state = State.HALF_OPEN
        self._probe_started = now
        self._publish()
        return True

    async def settled(self) -> None:
        """Return once the probe out now has a verdict (the caller bounds the wait)."""
        if self._verdict is None:
            self._verdict = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._verdict)

    def success(self, epoch: int | None = None) -> None:
        """The registry answered (a not-found is an answer too) to a call started in ``epoch``.

        A call started before the circuit last opened says nothing about the registry now.
        """
        if epoch is not None and epoch != self.epoch:
            return
        self.failures = 0
        if self.state is not State.CLOSED:
            log.warning("registry %r answers again; circuit closed", self.name)
            self.state = State.CLOSED
            self._closed_at = self._clock()
            self._publish()
            self._settle()

    def failure(self, kind: str, epoch: int | None = None) -> None:
        """A call failed: no answer, a 5xx, refused credentials: anything that is not the registry's word."""
        if epoch is not None and epoch != self.epoch:
            return  # a call from before the last opening: its outage was already counted
        self.failures += 1
        self.last_failure = kind
        if not self.config.enabled:
            return
        if self.state is State.HALF_OPEN or (
            self.state is State.CLOSED and self.failures >= self.config.failure_threshold
        ):
            self._open()

    def release(self, epoch: int | None = None) -> None:
        """A call ended without a verdict (cancelled); if it was the probe, let the next caller probe."""
        if self.state is State.HALF_OPEN and (epoch is None or epoch == self.epoch):
            self.state = State.OPEN
            self._retry_at = self._clock()
            self._publish()
            self._settle()

    def _settle(self) -> None:
        if self._verdict is not None:
            if not self._verdict.done():
                self._verdict.set_result(None)
            self._verdict = None

    def snapshot(self) -> Snapshot:
        wait = max(0.0, self._retry_at - self._clock()) if self.state is State.OPEN else 0.0
        return Snapshot(self.name, self.state, self.failures, self.last_failure, wait)

    def _open(self) -> None:
        now = self._clock()
        # a failed probe, or an outage soon after the last one, extends the streak
        recent = self.state is State.HALF_OPEN or now - self._closed_at < self.config.max_open_seconds
        self._streak = self._streak + 1 if recent else 1
        cfg = self.config
        interval = min(cfg.max_open_seconds, cfg.open_seconds * cfg.backoff_multiplier ** (self._streak - 1))
        interval *= 1 + cfg.jitter * (2 * self._rng() - 1)
        self._retry_at = now + interval
        self.state = State.OPEN
        self.epoch += 1
        metrics.REGISTRY_CIRCUIT_OPENS.labels(self.name).inc()
        log.warning(
            "registry %r: %d consecutive failures (last: %s); circuit open, next try in %.1fs",
            self.name,
            self.failures,
            self.last_failure,
            interval,
        )
        self._publish()
        self._settle()

    def _publish(self) -> None:
        metrics.REGISTRY_UP.labels(self.name).set(1 if self.state is State.CLOSED else 0)
        metrics.REGISTRY_CIRCUIT.labels(self.name).set(STATE_VALUE[self.state])
