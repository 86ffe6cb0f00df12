"""The touch: retried when it may pass, stopped when it will not, rate-limited, coalesced, fenced."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.support.fakes import FakeRegistry
from tests.unit.reconcile.conftest import KIND, FakeKube, load, managed
from webhook.reconcile.kube import ApiException
from webhook.reconcile.reconciler import Reconciler
from webhook.reconcile.touching import TokenBucket
from webhook.registry.resolver import Resolver
from webhook.templating import record_annotations as records


@pytest.mark.parametrize(
    ("failures", "touched", "attempts"),
    [
        ([ApiException(status=500, reason="etcd timeout"), ApiException(status=409, reason="Conflict")], True, 3),
        ([aiohttp.ClientConnectionError("Connection reset by peer")], True, 2),
        ([TimeoutError()], True, 2),
        ([ApiException(status=403, reason="denied by the webhook")], False, 1),  # will not pass on retry
        ([ApiException(status=404, reason="NotFound")], False, 1),
        ([ApiException(status=503, reason="Service Unavailable")] * 5, False, 5),  # gives up after five
    ],
    ids=["5xx-then-conflict", "connection", "timeout", "refused", "deleted", "exhausted"],
)
async def test_touch_retries_what_may_pass_and_stops_on_what_will_not(
    reconciler: Reconciler,
    live: Resolver,
    registry: FakeRegistry,
    kube: FakeKube,
    failures: list[BaseException],
    touched: bool,
    attempts: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def no_wait(seconds: float) -> None:
        if seconds < 0.1:  # the compare's wait for its token's millisecond
            await real_sleep(seconds)
        else:  # backoff between touch attempts: recorded, not waited for
            delays.append(seconds)

    monkeypatch.setattr("webhook.reconcile.touching.asyncio.sleep", no_wait)
    load(reconciler.index, [await managed(live, "moving", "models:/fraud@champion")])
    registry.set_alias("fraud", "champion", 3)
    kube.failures = list(failures)
    assert await reconciler.compare() == int(touched)
    assert kube.attempts == attempts
    # jittered exponential backoff: each delay within [ceiling/2, ceiling], the ceiling doubling
    assert all(0.1 * 2**i <= d <= 0.2 * 2**i for i, d in enumerate(delays)), delays
    if not touched and attempts == 5:
        assert reconciler.poller.retry == {"fraud"}  # the next poll tries again


async def test_touches_are_rate_limited(live: Resolver, registry: FakeRegistry, kube: FakeKube) -> None:
    rec = Reconciler(live, kube, [KIND], bucket=TokenBucket(rate=50, burst=5))  # type: ignore[arg-type]
    load(rec.index, [await managed(live, f"o{i}", "models:/fraud@champion") for i in range(15)])
    registry.set_alias("fraud", "champion", 3)
    started = time.monotonic()
    assert await rec.compare({"fraud"}) == 15
    # 5 at once, then 10 more at 50/s: at least 0.2 s
    assert time.monotonic() - started >= 0.19


async def test_a_touch_waiting_for_the_rate_limit_serves_a_later_compare_with_its_token(
    live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    rec = Reconciler(live, kube, [KIND], bucket=TokenBucket(rate=5, burst=1))  # type: ignore[arg-type]
    load(rec.index, [await managed(live, f"o{i}", "models:/fraud@champion") for i in range(4)])
    registry.set_alias("fraud", "champion", 3)
    first = asyncio.create_task(rec.compare({"fraud"}))
    for _ in range(1000):  # one goes out at once, three queue 0.2 s apart
        if kube.patches:
            break
        await asyncio.sleep(0.001)
    assert await rec.compare({"fraud"}) == 4  # a second delivery for the same move
    assert await first == 4
    tokens: dict[str, list[int]] = {}
    for name, patch in kube.patches:
        tokens.setdefault(name, []).append(int(patch["metadata"]["annotations"][records.REFRESH]))
    sent_first = kube.patches[0][0]
    # the object already sent is touched again for the later compare; the queued ones once, with its token
    assert len(kube.patches) == 5 and len(tokens[sent_first]) == 2
    newest = max(tokens[sent_first])
    assert all(t == [newest] for name, t in tokens.items() if name != sent_first)


async def test_no_touch_once_leadership_may_have_passed(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    load(reconciler.index, [await managed(live, "moving", "models:/fraud@champion")])
    registry.set_alias("fraud", "champion", 3)
    reconciler.touches.fence = lambda: False
    assert await reconciler.compare() == 0 and kube.attempts == 0
