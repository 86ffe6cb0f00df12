"""Leader election over a Lease: one holder, takeover after expiry, hand-over on release."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from webhook.reconcile.kube import ApiError
from webhook.reconcile.leadership import LeaderLease

NS, NAME = "modelpin-system", "modelpin-reconciler"


class LeaseStore:
    """The apiserver's Lease semantics: create fails if present, update is a compare-and-swap."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise OSError("connection refused")

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._check()
        found = self.leases.get((namespace, name))
        return copy.deepcopy(found) if found else None

    async def put_lease(self, namespace: str, lease: dict[str, Any], create: bool) -> dict[str, Any]:
        self._check()
        key = (namespace, lease["metadata"]["name"])
        current = self.leases.get(key)
        if create and current is not None:
            raise ApiError(409, "already exists")
        if not create:
            if current is None:
                raise ApiError(404, "not found")
            if lease["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "the object has been modified")
        self.version += 1
        stored = copy.deepcopy(lease)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[key] = stored
        return copy.deepcopy(stored)

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.leases[(NS, NAME)]["spec"]
        return spec

    def age(self, seconds: float) -> None:
        """Make the holder's last renewal ``seconds`` old."""
        renewed = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
        self.spec()["renewTime"] = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def store() -> LeaseStore:
    return LeaseStore()


def lease(store: LeaseStore, identity: str) -> LeaderLease:
    return LeaderLease(store, NS, NAME, identity, duration_seconds=15)  # type: ignore[arg-type]


async def test_the_first_replica_creates_and_holds_the_lease(store: LeaseStore) -> None:
    a = lease(store, "a")
    assert await a.try_acquire() and a.leader and a.reachable
    assert store.spec()["holderIdentity"] == "a" and store.spec()["leaseDurationSeconds"] == 15
    acquired = store.spec()["acquireTime"]
    assert await a.try_acquire()  # a renewal keeps the acquisition time
    assert store.spec()["acquireTime"] == acquired


async def test_a_standby_waits_while_the_lease_is_fresh_and_takes_over_after_it_expires(store: LeaseStore) -> None:
    a, b = lease(store, "a"), lease(store, "b")
    assert await a.try_acquire()
    store.age(14)
    assert not await b.try_acquire() and b.reachable
    assert store.spec()["holderIdentity"] == "a"
    store.age(16)
    assert await b.try_acquire()
    assert store.spec()["holderIdentity"] == "b" and store.spec()["leaseTransitions"] == 1
    assert not await a.try_acquire()  # the old leader sees it lost and stands by
    assert not a.leader


async def test_release_hands_over_at_once(store: LeaseStore) -> None:
    a, b = lease(store, "a"), lease(store, "b")
    assert await a.try_acquire()
    assert not await b.try_acquire()
    await a.release()
    assert not a.leader
    assert await b.try_acquire()


async def test_release_never_clears_someone_elses_lease(store: LeaseStore) -> None:
    a, b = lease(store, "a"), lease(store, "b")
    assert await a.try_acquire()
    store.age(16)
    assert await b.try_acquire()
    a.leader = True  # a has not noticed yet
    await a.release()
    assert store.spec()["holderIdentity"] == "b"


async def test_two_replicas_racing_for_an_expired_lease_get_one_winner(store: LeaseStore) -> None:
    a, b, c = lease(store, "a"), lease(store, "b"), lease(store, "c")
    assert await a.try_acquire()
    store.age(16)
    stale = await store.get_lease(NS, NAME)  # what b read before c wrote
    assert await c.try_acquire()
    original = store.get_lease

    async def read_stale(namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(stale)

    store.get_lease = read_stale  # type: ignore[method-assign]
    assert not await b.try_acquire()  # its write is refused by the resourceVersion check
    store.get_lease = original  # type: ignore[method-assign]
    assert store.spec()["holderIdentity"] == "c"


async def test_an_unreachable_apiserver_means_not_leading(store: LeaseStore) -> None:
    a = lease(store, "a")
    assert await a.try_acquire()
    store.down = True
    assert not await a.try_acquire()
    assert not a.leader and not a.reachable
