"""One active reconciler through a coordination.k8s.io/v1 Lease."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from webhook.reconcile.kube import ApiError, Kube

log = logging.getLogger("modelpin.lease")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _fmt(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class LeaderLease:
    def __init__(self, kube: Kube, namespace: str, name: str, identity: str, duration_seconds: int = 15) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration_seconds
        self.leader = False
        self.reachable = False

    async def try_acquire(self) -> bool:
        """Take or renew the lease; True while this process holds it."""
        try:
            self.leader = await self._attempt()
            self.reachable = True
        except (ApiError, OSError) as exc:
            log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            self.leader = False
            self.reachable = False
        return self.leader

    async def release(self) -> None:
        """On shutdown, hand over at once instead of after the lease duration."""
        if not self.leader:
            return
        self.leader = False
        try:
            lease = await self.kube.get_lease(self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["renewTime"] = _fmt(dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
            lease["spec"]["holderIdentity"] = ""
            await self.kube.put_lease(self.namespace, lease, create=False)
            log.info("released lease %s/%s", self.namespace, self.name)
        except (ApiError, OSError) as exc:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)

    async def _attempt(self) -> bool:
        now = _now()
        lease = await self.kube.get_lease(self.namespace, self.name)
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "renewTime": _fmt(now),
        }
        if lease is None:
            spec["acquireTime"] = _fmt(now)
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": spec,
            }
            try:
                await self.kube.put_lease(self.namespace, body, create=True)
            except ApiError as exc:
                if exc.status == 409:
                    return False  # another replica created it first
                raise
            return True
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity")
        renewed = _parse(current.get("renewTime")) or _parse(current.get("acquireTime"))
        duration = int(current.get("leaseDurationSeconds") or self.duration)
        expired = renewed is None or (now - renewed).total_seconds() > duration
        if holder != self.identity and not expired:
            return False
        if holder != self.identity:
            spec["acquireTime"] = _fmt(now)
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
            log.info("taking over lease from %s", holder)
        else:
            spec["acquireTime"] = current.get("acquireTime") or _fmt(now)
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0)
        lease["spec"] = spec
        try:
            # resourceVersion in the body makes this a compare-and-swap
            await self.kube.put_lease(self.namespace, lease, create=False)
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True
