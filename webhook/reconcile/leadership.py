"""One active reconciler through a coordination.k8s.io/v1 Lease, with client-go's semantics.

- Expiry is judged on this replica's monotonic clock, from when it last saw the
  lease record change; the holder's ``renewTime`` is never compared with the
  local wall clock, because clocks differ between machines.
- A leader renews every retry period; if it has not renewed successfully for
  the renew deadline (shorter than the lease), it stops working, so it stops
  before any standby can judge the lease expired.
- Every call carries a deadline, never longer than what is left of the renew
  deadline; a standby tries forever.

kubernetes_asyncio ships a leader elector, but it judges expiry with the wall
clock and has no per-call deadline, and those two are the point of this module;
its Lease API calls are used underneath.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from webhook.reconcile.kube import KUBE_ERRORS, ApiException, Kube, describe

log = logging.getLogger("modelpin.lease")


def _fmt(moment: dt.datetime) -> str:
    # MicroTime: RFC 3339 with exactly six fractional digits
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderLease:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        duration_seconds: int = 15,
        renew_deadline_seconds: float | None = None,
        retry_period_seconds: float | None = None,
        timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration_seconds
        self.renew_deadline = renew_deadline_seconds or duration_seconds * 2 / 3
        self.retry_period = retry_period_seconds or duration_seconds * 2 / 15
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError(
                f"lease timing must satisfy 0 < retry period ({self.retry_period}s) < renew deadline "
                f"({self.renew_deadline}s) < lease duration ({self.duration}s)"
            )
        self.timeout = timeout_seconds
        self.clock = clock
        self.leader = False
        self.reachable = False
        self.renewed_at = float("-inf")  # monotonic start of the last successful acquire or renew
        self.holder = ""
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._last_error = ""

    def valid(self) -> bool:
        """True while this replica may act as leader: within the renew deadline of its last renewal."""
        return self.remaining() > 0

    def remaining(self) -> float:
        """Seconds this replica may still act as leader; 0 once it may not (no call it makes should outlive this)."""
        if not self.leader:
            return 0.0
        return max(0.0, self.renewed_at + self.renew_deadline - self.clock())

    def _call_timeout(self) -> float:
        if not self.leader:
            return self.timeout
        # a renewal that would end after the deadline is useless: the leader will have stopped
        return max(0.05, min(self.timeout, self.renewed_at + self.renew_deadline - self.clock()))

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True while this process holds the lease. Apiserver errors are absorbed and logged once."""
        started = self.clock()
        try:
            held = await self._attempt(started)
        except KUBE_ERRORS as exc:
            self.reachable = False
            text = describe(exc)
            if text != self._last_error:
                log.warning("lease %s/%s: %s", self.namespace, self.name, text)
                self._last_error = text
            return False
        if self._last_error:
            log.info("lease %s/%s: the apiserver answers again", self.namespace, self.name)
            self._last_error = ""
        self.reachable = True
        if held:
            self.renewed_at = started
        return held

    async def _attempt(self, started: float) -> bool:
        timeout = self._call_timeout()
        lease = await self.kube.get_lease(self.namespace, self.name, timeout)
        now = dt.datetime.now(dt.UTC)
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "renewTime": _fmt(now),
        }
        if lease is None:
            spec.update(acquireTime=_fmt(now), leaseTransitions=0)
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": spec,
            }
            try:
                await self.kube.create_lease(self.namespace, body, self._call_timeout())
            except ApiException as exc:
                if exc.status == 409:
                    return False  # another replica created it first
                raise
            self._observe(spec, started)
            return True
        current = lease.spec
        record = (
            current.holder_identity,
            current.lease_duration_seconds,
            current.acquire_time,
            current.renew_time,
            current.lease_transitions,
        )
        if record != self._observed:
            # Stamped when the read returns, as client-go stamps observedTime when it sees the record:
            # the record may have been written at any moment of a slow read, and the holder's lease runs
            # from that write; stamped at the read's start, a standby could take over while it still leads.
            self._observed, self._observed_at = record, self.clock()
        holder = current.holder_identity or ""
        self.holder = holder
        duration = current.lease_duration_seconds or self.duration
        if holder and holder != self.identity and self.clock() < self._observed_at + duration:
            return False
        transitions = current.lease_transitions or 0
        if holder == self.identity and current.acquire_time is not None:
            spec.update(acquireTime=_fmt(current.acquire_time), leaseTransitions=transitions)
        else:
            spec.update(acquireTime=_fmt(now), leaseTransitions=transitions + 1)
            if holder:
                log.info("lease %s/%s: taking over from %s", self.namespace, self.name, holder)
        try:
            await self.kube.replace_lease(
                self.namespace, self._body(lease.metadata.resource_version, spec), self._call_timeout()
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self._observe(spec, started)
        return True

    def _body(self, resource_version: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The Lease to write; its resourceVersion makes the write a compare-and-swap (a concurrent writer: 409)."""
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace, "resourceVersion": resource_version},
            "spec": spec,
        }

    def _observe(self, spec: dict[str, Any], at: float) -> None:
        # what we wrote is what we last observed; the tuple shape differs from a read one, which
        # only makes the next read count as a change (harmless: it restarts a clock we hold)
        self._observed, self._observed_at = tuple(spec.values()), at
        self.holder = self.identity

    async def release(self) -> None:
        """On shutdown, hand over at once instead of after the lease duration."""
        if not self.leader:
            return
        self.leader = False
        try:
            lease = await self.kube.get_lease(self.namespace, self.name, self.timeout)
            if lease is None or lease.spec.holder_identity != self.identity:
                return
            now = _fmt(dt.datetime.now(dt.UTC))
            spec = {
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": now,
                "acquireTime": now,
                "leaseTransitions": lease.spec.lease_transitions or 0,
            }
            await self.kube.replace_lease(
                self.namespace, self._body(lease.metadata.resource_version, spec), self.timeout
            )
            log.info("released lease %s/%s", self.namespace, self.name)
        except KUBE_ERRORS as exc:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, describe(exc))
