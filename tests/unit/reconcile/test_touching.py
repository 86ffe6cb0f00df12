"""The touch: retried when it may pass, stopped when it will not, rate-limited, coalesced, fenced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import pytest
from prometheus_client import REGISTRY

from tests.support.fakes import FakeRegistry, make_settings
from tests.unit.reconcile.conftest import KIND, FakeKube, load, managed, refreshed, token_of
from webhook.reconcile.kube import ApiException
from webhook.reconcile.loops import Backoff
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
        elif seconds < 100:  # backoff between touch attempts: recorded, not waited for
            delays.append(seconds)
        else:  # the later compare-and-touch again: left waiting
            await real_sleep(3600)

    monkeypatch.setattr("webhook.reconcile.touching.asyncio.sleep", no_wait)
    reconciler.touches.retry_first = reconciler.touches.retry_cap = 1000.0
    load(reconciler.index, [await managed(live, "moving", "models:/fraud@champion")])
    registry.set_alias("fraud", "champion", 3)
    kube.failures = list(failures)
    assert await reconciler.compare() == int(touched)
    assert kube.attempts == attempts
    # jittered exponential backoff: each delay within [ceiling/2, ceiling], the ceiling doubling
    assert all(0.1 * 2**i <= d <= 0.2 * 2**i for i, d in enumerate(delays)), delays
    follow_ups = sorted(t.get_name().split()[0] for t in reconciler.touches.tasks)
    # a sent touch waits for the watch; one that kept failing is compared and touched again later
    assert follow_ups == (["confirm"] if touched else ["retry"] if attempts == 5 else [])


async def test_touches_are_rate_limited(live: Resolver, registry: FakeRegistry, kube: FakeKube) -> None:
    rec = Reconciler(live, kube, [KIND], bucket=TokenBucket(rate=50, burst=5))  # type: ignore[arg-type]
    load(rec.index, [await managed(live, f"o{i}", "models:/fraud@champion") for i in range(15)])
    registry.set_alias("fraud", "champion", 3)
    started = time.monotonic()
    assert await rec.compare({"fraud"}) == 15
    # 5 at once, then 10 more at 50/s: at least 0.2 s
    assert time.monotonic() - started >= 0.19
    await rec.touches.stop()


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
    await rec.touches.stop()


async def test_no_touch_once_leadership_may_have_passed(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    load(reconciler.index, [await managed(live, "moving", "models:/fraud@champion")])
    registry.set_alias("fraud", "champion", 3)
    reconciler.touches.validity = lambda: 0.0
    assert await reconciler.compare() == 0 and kube.attempts == 0


def touches(result: str) -> float:
    return REGISTRY.get_sample_value("modelpin_reconciler_touches_total", {"result": result}) or 0.0


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.005)


def fast(self: Backoff) -> float:
    """Backoff.next_delay counting its attempts as the real one does, in milliseconds."""
    self.attempt += 1
    return 0.005


@pytest.fixture
def quick(reconciler: Reconciler) -> Reconciler:
    """Retries within milliseconds instead of seconds."""
    reconciler.touches.retry_first, reconciler.touches.retry_cap = 0.01, 0.02
    return reconciler


async def test_a_touch_counts_only_once_the_watch_shows_the_new_uri(
    quick: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    before = await managed(live, "moving", "models:/fraud@champion")
    load(quick.index, [before])
    registry.set_alias("fraud", "champion", 3)
    counted = {r: touches(r) for r in ("unconfirmed", "retried", "confirmed")}
    assert await quick.compare() == 1
    first = token_of(kube.patches[0][1])
    # the webhook was unreachable (failurePolicy Ignore): the token is stored with the old URI
    await quick.watcher.observe(KIND, refreshed(before, first))
    await until(lambda: len(kube.patches) == 2)  # compared again after the backoff, still stale: touched again
    second = token_of(kube.patches[1][1])
    assert second > first
    assert touches("unconfirmed") == counted["unconfirmed"] + 1 and touches("retried") == counted["retried"] + 1
    # the webhook is back: the re-admitted object records version 3
    after = await managed(Resolver(make_settings(), {"mlflow": registry}), "moving", "models:/fraud@champion")
    await quick.watcher.observe(KIND, refreshed(after, second))
    await until(lambda: touches("confirmed") == counted["confirmed"] + 1)
    await asyncio.sleep(0.1)  # several backoffs' worth: nothing more is sent
    assert len(kube.patches) == 2 and not quick.touches.tasks


async def test_a_touch_the_watch_never_shows_is_tried_again(
    quick: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    load(quick.index, [await managed(live, "moving", "models:/fraud@champion")])
    registry.set_alias("fraud", "champion", 3)
    quick.touches.confirm_seconds = 0.05
    assert await quick.compare() == 1
    await until(lambda: len(kube.patches) == 2)


async def test_an_event_from_before_the_touch_neither_confirms_nor_refutes_it(
    quick: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    before = await managed(live, "moving", "models:/fraud@champion")
    load(quick.index, [before])
    registry.set_alias("fraud", "champion", 3)
    assert await quick.compare() == 1
    await quick.watcher.observe(KIND, before)  # an unrelated write that was on its way
    await asyncio.sleep(0.1)
    assert len(kube.patches) == 1 and [t.get_name().split()[0] for t in quick.touches.tasks] == ["confirm"]


async def test_a_touch_refused_while_the_webhook_is_down_is_retried_until_it_passes(
    quick: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Backoff, "next_delay", fast)
    load(quick.index, [await managed(live, "moving", "models:/fraud@champion")])
    registry.set_alias("fraud", "champion", 3)
    # failurePolicy Fail with the webhook unreachable: the apiserver answers 500 to every write
    down = ApiException(status=500, reason='Internal error occurred: failed calling webhook "modelpin"')
    kube.failures = [down] * 12
    assert await quick.compare() == 0  # five tries, then a later round
    await until(lambda: len(kube.patches) == 1)  # rounds of five until the webhook answers again
    assert kube.attempts == 13
    after = await managed(Resolver(make_settings(), {"mlflow": registry}), "moving", "models:/fraud@champion")
    await quick.watcher.observe(KIND, refreshed(after, token_of(kube.patches[0][1])))
    await until(lambda: not quick.touches.tasks)


async def test_an_object_never_re_admitted_is_left_to_the_next_poll(
    quick: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("webhook.reconcile.touching.RETRIES", 2)
    load(quick.index, [await managed(live, "moving", "models:/fraud@champion")])
    registry.set_alias("fraud", "champion", 3)
    quick.touches.confirm_seconds = 0.02
    abandoned = touches("abandoned")
    assert await quick.compare() == 1
    await until(lambda: touches("abandoned") == abandoned + 1)
    assert len(kube.patches) == 3  # the touch and two more rounds
    assert quick.poller.retry == {"fraud"} and not quick.touches.tasks


async def test_a_touch_never_outlives_leadership(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    load(reconciler.index, [await managed(live, f"o{i}", "models:/fraud@champion") for i in range(2)])
    registry.set_alias("fraud", "champion", 3)
    left = iter([0.3, 120.0])
    reconciler.touches.validity = lambda: next(left)
    assert await reconciler.compare() == 2
    # what is left of the lease when less than the call timeout, else the call timeout
    assert sorted(d for d in kube.deadlines if d is not None) == [0.3, kube.timeout]


async def test_touches_refused_for_good_are_left_to_the_next_poll(
    quick: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("webhook.reconcile.touching.RETRIES", 2)
    monkeypatch.setattr(Backoff, "next_delay", fast)
    load(quick.index, [await managed(live, "moving", "models:/fraud@champion")])
    registry.set_alias("fraud", "champion", 3)
    kube.failures = [ApiException(status=500, reason="Internal error occurred: failed calling webhook")] * 100
    abandoned = touches("abandoned")
    assert await quick.compare() == 0
    await until(lambda: touches("abandoned") == abandoned + 1)
    await asyncio.sleep(0.05)
    assert kube.attempts == 15  # five tries, then two more rounds of five
    assert quick.poller.retry == {"fraud"} and not quick.touches.tasks
