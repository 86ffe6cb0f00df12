"""Leader election over a Lease with client-go's semantics, against a store with the apiserver's rules.

The store returns the library's own V1Lease models and fails with its real exception types.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client as k8s

from webhook.reconcile.kube import ApiException
from webhook.reconcile.leadership import LeaderLease

NS, NAME = "modelpin-system", "modelpin-reconciler"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


class LeaseStore:
    """create fails if present, replace is a compare-and-swap; ``failure`` is raised by every call."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.failure: BaseException | None = None
        self.deadlines: list[float | None] = []

    def _check(self, deadline: float | None) -> None:
        self.deadlines.append(deadline)
        if self.failure is not None:
            raise self.failure

    async def get_lease(self, namespace: str, name: str, deadline: float | None = None) -> k8s.V1Lease | None:
        self._check(deadline)
        found = self.leases.get((namespace, name))
        if found is None:
            return None
        spec = found["spec"]
        return k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(
                name=name, namespace=namespace, resource_version=found["metadata"]["resourceVersion"]
            ),
            spec=k8s.V1LeaseSpec(
                holder_identity=spec.get("holderIdentity"),
                lease_duration_seconds=spec.get("leaseDurationSeconds"),
                acquire_time=_time(spec.get("acquireTime")),
                renew_time=_time(spec.get("renewTime")),
                lease_transitions=spec.get("leaseTransitions"),
            ),
        )

    async def create_lease(self, namespace: str, lease: dict[str, Any], deadline: float | None = None) -> None:
        self._check(deadline)
        if (namespace, lease["metadata"]["name"]) in self.leases:
            raise ApiException(status=409, reason="AlreadyExists")
        self._store(namespace, lease)

    async def replace_lease(self, namespace: str, lease: dict[str, Any], deadline: float | None = None) -> None:
        self._check(deadline)
        current = self.leases.get((namespace, lease["metadata"]["name"]))
        if current is None:
            raise ApiException(status=404, reason="NotFound")
        if lease["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self._store(namespace, lease)

    def _store(self, namespace: str, lease: dict[str, Any]) -> None:
        self.version += 1
        stored = copy.deepcopy(lease)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[(namespace, lease["metadata"]["name"])] = stored

    def spec(self) -> dict[str, Any]:
        return dict(self.leases[(NS, NAME)]["spec"])


@pytest.fixture
async def store() -> LeaseStore:
    return LeaseStore()


def lease(store: LeaseStore, identity: str, clock: Clock) -> LeaderLease:
    # a 4 s lease as in the e2e tests: 2.67 s renew deadline, 0.53 s retry period
    return LeaderLease(store, NS, NAME, identity, 4, timeout_seconds=10, clock=clock)  # type: ignore[arg-type]


async def acquire(candidate: LeaderLease) -> bool:
    held = await candidate.try_acquire_or_renew()
    candidate.leader = held or candidate.leader
    return held


async def test_the_first_replica_creates_and_holds_the_lease(store: LeaseStore) -> None:
    clock = Clock()
    a = lease(store, "a", clock)
    assert await acquire(a) and a.valid()
    assert store.spec()["holderIdentity"] == "a" and store.spec()["leaseTransitions"] == 0
    assert await acquire(a)  # renews its own lease


async def test_expiry_is_judged_on_the_local_clock_from_the_last_observed_change(store: LeaseStore) -> None:
    clock = Clock()
    a, b = lease(store, "a", clock), lease(store, "b", clock)
    assert await acquire(a)
    # the holder's clock is far behind: its renewTime looks ancient to anyone comparing wall clocks
    store.leases[(NS, NAME)]["spec"]["renewTime"] = "2001-01-01T00:00:00.000000Z"
    assert not await acquire(b)  # first observation: b starts its own clock now
    clock.now += 3.9
    assert not await acquire(b)  # not yet a lease duration since b saw the record change
    clock.now += 0.2
    assert await acquire(b)
    assert store.spec()["holderIdentity"] == "b" and store.spec()["leaseTransitions"] == 1


async def test_a_renewal_restarts_the_standbys_clock(store: LeaseStore) -> None:
    clock = Clock()
    a, b = lease(store, "a", clock), lease(store, "b", clock)
    assert await acquire(a)
    assert not await acquire(b)
    clock.now += 3
    assert await acquire(a)  # renewTime changes
    clock.now += 0.5
    assert not await acquire(b)  # b sees the change now, and waits a full duration from here
    clock.now += 3.9
    assert not await acquire(b)
    clock.now += 0.2
    assert await acquire(b)


@pytest.mark.parametrize(
    "failure",
    [
        aiohttp.ClientConnectionError("Cannot connect to host"),
        TimeoutError(),
        ApiException(status=503, reason="Service Unavailable"),
    ],
    ids=["connection", "timeout", "5xx"],
)
async def test_a_leader_that_cannot_renew_stops_before_the_lease_can_expire(
    store: LeaseStore, failure: BaseException
) -> None:
    clock = Clock()
    a = lease(store, "a", clock)
    assert await acquire(a)
    store.failure = failure
    clock.now += 2.0
    assert not await a.try_acquire_or_renew() and not a.reachable
    assert a.valid()  # within the renew deadline: still leading
    # every call's deadline is what is left of the renew deadline, never the full timeout
    assert store.deadlines[-1] == pytest.approx(4 * 2 / 3 - 2.0)
    clock.now += 0.7
    assert not a.valid()  # 2.7 s > 2.67 s renew deadline, well before the 4 s a standby must wait
    assert a.renew_deadline < a.duration


async def test_a_standby_keeps_trying_through_an_outage(store: LeaseStore) -> None:
    clock = Clock()
    b = lease(store, "b", clock)
    store.failure = aiohttp.ClientConnectionError("Cannot connect to host")
    for _ in range(50):
        assert not await b.try_acquire_or_renew()
        clock.now += 1
    store.failure = None
    assert await acquire(b) and b.reachable


async def test_release_hands_over_at_once(store: LeaseStore) -> None:
    clock = Clock()
    a, b = lease(store, "a", clock), lease(store, "b", clock)
    assert await acquire(a)
    assert not await acquire(b)
    await a.release()
    assert await acquire(b)


async def test_release_never_clears_someone_elses_lease(store: LeaseStore) -> None:
    clock = Clock()
    a, b = lease(store, "a", clock), lease(store, "b", clock)
    assert await acquire(a)
    assert not await acquire(b)
    clock.now += 5
    assert await acquire(b)
    await a.release()
    assert store.spec()["holderIdentity"] == "b"


async def test_two_replicas_racing_for_an_expired_lease_get_one_winner(store: LeaseStore) -> None:
    clock = Clock()
    a, b, c = lease(store, "a", clock), lease(store, "b", clock), lease(store, "c", clock)
    assert await acquire(a)
    assert not await acquire(b) and not await acquire(c)
    clock.now += 5
    results = await asyncio.gather(b.try_acquire_or_renew(), c.try_acquire_or_renew())
    assert sorted(results) == [False, True]


def test_the_renew_deadline_must_be_shorter_than_the_lease(store: LeaseStore) -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        LeaderLease(store, NS, NAME, "a", 4, renew_deadline_seconds=5)  # type: ignore[arg-type]


def test_times_are_written_as_microtime() -> None:
    from webhook.reconcile.leadership import _fmt

    assert _fmt(dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == "2025-01-02T03:04:05.000000Z"


class SlowStore(LeaseStore):
    """A read that takes ``delay`` seconds, during which ``during`` runs (the holder renewing, say)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.delay = 0.0
        self.during: list[LeaderLease] = []

    async def get_lease(self, namespace: str, name: str, deadline: float | None = None) -> k8s.V1Lease | None:
        if self.delay:
            delay, self.delay = self.delay, 0.0
            self.clock.now += delay
            for holder in self.during:
                assert await acquire(holder)  # the record the slow read returns was written at its end
        return await super().get_lease(namespace, name, deadline)


async def test_a_slow_read_does_not_let_a_standby_take_over_early() -> None:
    clock = Clock()
    store = SlowStore(clock)
    a, b = lease(store, "a", clock), lease(store, "b", clock)
    assert await acquire(a)
    store.delay, store.during = 3.0, [a]  # longer than the 0.53 s retry period
    assert not await acquire(b)
    # a renewed 3 s into b's read and then went silent (partitioned): it leads for its renew deadline,
    # and a standby must wait a lease duration from when it saw that renewal, not from when it asked
    renewed = clock.now
    while a.valid():
        assert a.remaining() > 0
        assert not await acquire(b), f"b took over {clock.now - renewed:.1f} s after a's renewal while a leads"
        clock.now += 0.1
    clock.now = renewed + 3.95
    assert not await acquire(b)
    clock.now = renewed + 4.05
    assert await acquire(b)


async def test_remaining_is_what_is_left_of_the_renew_deadline(store: LeaseStore) -> None:
    clock = Clock()
    a = lease(store, "a", clock)
    assert a.remaining() == 0  # not leading
    assert await acquire(a)
    clock.now += 1.0
    assert a.remaining() == pytest.approx(4 * 2 / 3 - 1.0)
    clock.now += 5
    assert a.remaining() == 0 and not a.valid()
