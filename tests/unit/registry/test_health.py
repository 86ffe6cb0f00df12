"""The circuit breaker's state machine, on a hand-moved clock."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY as PROMETHEUS

from webhook.config import RegistryHealthConfig
from webhook.registry.health import RegistryHealth, State


class Seconds:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Seconds, rng: float = 0.5, name: str = "health-test", **config: float) -> RegistryHealth:
    values: dict[str, Any] = {
        "failure_threshold": 3,
        "open_seconds": 1.0,
        "max_open_seconds": 5.0,
        "jitter": 0.2,
        **config,
    }
    return RegistryHealth(name, RegistryHealthConfig(**values), clock, lambda: rng)


def gauge(name: str, registry: str) -> float | None:
    return PROMETHEUS.get_sample_value(name, {"registry": registry})


def test_opens_after_consecutive_failures_only() -> None:
    clock = Seconds()
    h = breaker(clock)
    h.failure("server_error")
    h.failure("server_error")
    h.success()  # an answer in between: the count starts again
    h.failure("timeout")
    h.failure("timeout")
    assert h.allow() and h.snapshot().state is State.CLOSED
    h.failure("timeout")
    assert h.snapshot().state is State.OPEN
    assert not h.allow()
    snap = h.snapshot()
    assert (snap.consecutive_failures, snap.last_failure, snap.up) == (3, "timeout", False)
    assert snap.retry_in_seconds == 1.0  # rng 0.5: no jitter either way


def test_one_probe_after_the_interval_then_closed_on_success() -> None:
    clock = Seconds()
    h = breaker(clock, name="probe-test")
    for _ in range(3):
        h.failure("connection")
    assert gauge("modelpin_registry_up", "probe-test") == 0
    assert gauge("modelpin_registry_circuit_state", "probe-test") == 1
    clock.now += 0.99
    assert not h.allow()
    clock.now += 0.02
    assert h.allow()  # the probe
    assert h.state is State.HALF_OPEN
    assert gauge("modelpin_registry_circuit_state", "probe-test") == 2
    assert not h.allow()  # one probe at a time
    h.success()
    assert h.snapshot().state is State.CLOSED and h.allow()
    assert gauge("modelpin_registry_up", "probe-test") == 1
    assert gauge("modelpin_registry_circuit_opens_total", "probe-test") == 1


def test_intervals_grow_to_the_maximum_while_the_probe_fails() -> None:
    clock = Seconds()
    h = breaker(clock)
    for _ in range(3):
        h.failure("timeout")
    waits = []
    for _ in range(5):
        waits.append(h.snapshot().retry_in_seconds)
        clock.now += waits[-1]
        assert h.allow()
        h.failure("timeout")  # the probe fails: open again, longer
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_spreads_the_interval() -> None:
    low, high = breaker(Seconds(), rng=0.0), breaker(Seconds(), rng=0.999999)
    for h in (low, high):
        for _ in range(3):
            h.failure("timeout")
    assert round(low.snapshot().retry_in_seconds, 3) == 0.8
    assert round(high.snapshot().retry_in_seconds, 3) == 1.2


def test_a_flapping_registry_keeps_growing_intervals_until_healthy_for_a_while() -> None:
    clock = Seconds()
    h = breaker(clock)

    def outage() -> float:
        for _ in range(3):
            h.failure("reset")
        return h.snapshot().retry_in_seconds

    assert outage() == 1.0
    clock.now += 1.0
    assert h.allow()
    h.success()
    clock.now += 1.0  # up for a second only
    assert outage() == 2.0
    clock.now += 2.0
    assert h.allow()
    h.success()
    clock.now += 5.0  # healthy for max_open_seconds: the streak is over
    assert outage() == 1.0


def test_a_lost_probe_lets_the_next_caller_probe() -> None:
    clock = Seconds()
    h = breaker(clock)
    for _ in range(3):
        h.failure("timeout")
    clock.now += 1.0
    assert h.allow()
    h.release()  # cancelled: no verdict
    assert h.state is State.OPEN and h.allow()
    # a probe that never reports is replaced after max_open_seconds
    assert not h.allow()
    clock.now += 5.0
    assert h.allow()


def test_disabled_never_opens() -> None:
    clock = Seconds()
    h = RegistryHealth("disabled-test", RegistryHealthConfig(enabled=False, failure_threshold=1), clock)
    for _ in range(10):
        h.failure("timeout")
    assert h.allow() and h.state is State.CLOSED
    assert h.snapshot().consecutive_failures == 10


# --- epochs: only a call started since the last opening moves the circuit --------------------


def test_a_success_from_before_the_opening_does_not_close_it() -> None:
    clock = Seconds()
    h = breaker(clock, name="epoch-test")
    before = h.epoch
    for _ in range(3):
        h.failure("timeout", h.epoch)
    assert h.snapshot().state is State.OPEN and h.epoch == before + 1
    h.success(before)  # a slow call sent before the outage answers late
    assert h.snapshot().state is State.OPEN
    clock.now += 1.0
    assert h.allow()  # the probe
    probe = h.epoch
    h.failure("timeout", before)  # a late failure from before neither reopens nor counts
    assert h.snapshot().state is State.HALF_OPEN and h.snapshot().consecutive_failures == 3
    h.release(before)  # nor does a late cancellation give the probe away
    assert h.snapshot().state is State.HALF_OPEN
    h.success(probe)
    assert h.snapshot().state is State.CLOSED


async def test_settled_returns_on_the_probes_verdict() -> None:
    import asyncio

    clock = Seconds()
    h = breaker(clock, name="settle-test")
    for _ in range(3):
        h.failure("timeout")
    clock.now += 1.0
    assert h.allow() and not h.allow()  # the probe is out; a second caller is not let through
    waiting = asyncio.create_task(h.settled())
    await asyncio.sleep(0)
    assert not waiting.done()
    h.success(h.epoch)
    await asyncio.wait_for(waiting, 1)
    assert h.allow()
