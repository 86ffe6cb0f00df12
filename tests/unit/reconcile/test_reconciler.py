"""The reconciler's decisions: whom to touch, how hard to try, what to report.

Objects are the webhook's own output for the fake registry, so the index reads
the records admission really writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.fakes import FakeRegistry, apply_response, make_settings
from webhook.admission.decision import admit
from webhook.admission.review import AdmissionRequest
from webhook.reconcile.kube import ApiException, Kind
from webhook.reconcile.reconciler import Backoff, Reconciler, TokenBucket, WorkDied
from webhook.registry.clients import RegisteredModel
from webhook.registry.resolver import Resolver
from webhook.templating import record_annotations as records

KIND = Kind.parse("serving.kserve.io/v1beta1/inferenceservices")


class FakeKube:
    """merge_patch and event recorded, list and watch scripted; failures are the library's real exceptions."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.events: list[tuple[str, str, str, str]] = []
        self.failures: list[BaseException] = []
        self.attempts = 0
        self.listing: list[dict[str, Any]] = []
        self.list_failures: list[BaseException] = []
        self.lists = 0
        self.watch_script: list[list[dict[str, Any]] | BaseException] = []
        self.watched = asyncio.Event()

    async def merge_patch(
        self, kind: Kind, namespace: str, name: str, patch: dict[str, Any], deadline: float | None = None
    ) -> dict[str, Any]:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.patches.append((name, patch))
        return {}

    async def event(self, involved: dict[str, str], event_type: str, reason: str, message: str) -> None:
        self.events.append((involved["name"], event_type, reason, message))

    async def list_pages(self, kind: Kind, selector: str) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        self.lists += 1
        if self.list_failures:
            raise self.list_failures.pop(0)
        yield list(self.listing), "100"

    async def watch(self, kind: Kind, selector: str, version: str) -> AsyncIterator[dict[str, Any]]:
        if not self.watch_script:
            self.watched.set()
            await asyncio.Event().wait()  # a quiet watch
        step = self.watch_script.pop(0)
        if isinstance(step, BaseException):
            raise step
        for event in step:
            yield event

    def touched(self) -> set[str]:
        return {name for name, _ in self.patches}


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
async def live(registry: FakeRegistry) -> Resolver:
    # the wall clock, as in production: the reconciler's tokens are wall-clock milliseconds
    return Resolver(make_settings(), {"mlflow": registry})


@pytest.fixture
def reconciler(live: Resolver, kube: FakeKube) -> Reconciler:
    return Reconciler(live, kube, [KIND])  # type: ignore[arg-type]


async def managed(resolver: Resolver, name: str, uri: str) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"predictor": {"model": {"storageUri": uri}}},
    }
    request: AdmissionRequest = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService"},
        "namespace": "team",
        "operation": "CREATE",
        "object": obj,
    }
    return apply_response(obj, await admit(request, resolver=resolver))


async def test_only_objects_whose_version_moved_are_touched(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    reconciler.index.replace_kind(
        KIND,
        [
            await managed(live, "moving", "models:/fraud@champion"),
            await managed(live, "pinned", "models:/fraud/2"),  # same model, pinned: its version cannot move
            await managed(live, "other", "models:/iris demo1@champion"),
        ],
    )
    assert await reconciler.compare() == 0
    assert kube.patches == []
    registry.set_alias("fraud", "champion", 3)
    assert await reconciler.compare({"fraud"}) == 1
    assert kube.touched() == {"moving"}
    _, patch = kube.patches[0]
    assert int(patch["metadata"]["annotations"][records.REFRESH]) > 0


async def test_a_compare_asks_the_resolver_once_per_reference(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not left to the resolver's cache: at scale a compare outlasts the floating TTL, and an
    # entry fetched for the first object using a model had expired by the last one.
    models = ["iris demo1", "iris demo2", "fraud"]
    reconciler.index.replace_kind(
        KIND, [await managed(live, f"o{i}", f"models:/{models[i % 3]}@champion") for i in range(30)]
    )
    registry.set_alias("fraud", "champion", 3)
    asked: list[str] = []
    resolve = live.resolve

    async def counted(p: Any, **kwargs: Any) -> Any:
        asked.append(p.reference.name)
        return await resolve(p, **kwargs)

    monkeypatch.setattr(live, "resolve", counted)
    assert await reconciler.compare() == 10
    assert sorted(asked) == sorted(models)


async def test_paused_objects_are_never_touched(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    obj = await managed(live, "paused", "models:/fraud@champion")
    obj["metadata"]["annotations"][records.PAUSED] = "true"
    reconciler.index.replace_kind(KIND, [obj])
    registry.set_alias("fraud", "champion", 3)
    assert await reconciler.compare() == 0 and kube.attempts == 0


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

    monkeypatch.setattr("webhook.reconcile.reconciler.asyncio.sleep", no_wait)
    reconciler.index.replace_kind(KIND, [await managed(live, "moving", "models:/fraud@champion")])
    registry.set_alias("fraud", "champion", 3)
    kube.failures = list(failures)
    assert await reconciler.compare() == int(touched)
    assert kube.attempts == attempts
    # jittered exponential backoff: each delay within [ceiling/2, ceiling], the ceiling doubling
    assert all(0.1 * 2**i <= d <= 0.2 * 2**i for i, d in enumerate(delays)), delays
    if not touched and attempts == 5:
        assert reconciler._retry == {"fraud"}  # the next poll tries again


async def test_a_reference_that_stops_resolving_warns_once_per_interval_and_keeps_the_object(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    reconciler.index.replace_kind(KIND, [await managed(live, "orphan", "models:/fraud@champion")])
    del registry.aliases[("fraud", "champion")]
    for _ in range(3):
        assert await reconciler.compare() == 0
    assert kube.attempts == 0
    assert len(kube.events) == 1
    name, event_type, reason, message = kube.events[0]
    assert (name, event_type, reason) == ("orphan", "Warning", "ModelReferenceNotFound")
    assert message.startswith("/spec/predictor/model/storageUri: keeping the current version:")
    # and it resumes when the reference resolves again
    registry.set_alias("fraud", "champion", 3)
    assert await reconciler.compare() == 1


async def test_a_new_version_seen_by_the_watch_or_a_relist_is_reported(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    before = await managed(live, "moving", "models:/fraud@champion")
    reconciler.index.replace_kind(KIND, [before])
    registry.set_alias("fraud", "champion", 3)
    fresh = Resolver(make_settings(), {"mlflow": registry})  # the webhook re-admits with the new version
    after = await managed(fresh, "moving", "models:/fraud@champion")
    await reconciler.observe(KIND, after)
    assert kube.events == [("moving", "Normal", "ModelVersionChanged", "fraud: 2 -> 3 (@champion)")]
    # a change made while the watch was down is found by the relist
    registry.set_alias("fraud", "champion", 2)
    again = await managed(Resolver(make_settings(), {"mlflow": registry}), "moving", "models:/fraud@champion")
    changed = reconciler.index.replace_kind(KIND, [again])
    assert [[c.message() for c in changes] for _, changes in changed] == [["fraud: 3 -> 2 (@champion)"]]


class SearchingRegistry(FakeRegistry):
    """The fake registry plus search_registered_models, counted like every other call."""

    async def search_registered_models(self, page_size: int = 1000) -> list[RegisteredModel]:
        self.calls["search_registered_models"] += 1
        names = sorted(set(self.versions) | {name for name, _ in self.aliases})
        return [
            RegisteredModel(
                name=name,
                aliases={alias: v for (n, alias), v in self.aliases.items() if n == name},
                latest_versions=tuple(self.versions.get(name, {}).values()),
            )
            for name in names
        ]


async def test_a_poll_resolves_only_models_whose_search_entry_changed(registry: FakeRegistry, kube: FakeKube) -> None:
    searching = SearchingRegistry()
    searching.__dict__.update({k: v for k, v in registry.__dict__.items() if k != "calls"})
    live = Resolver(make_settings(), {"mlflow": searching})
    rec = Reconciler(live, kube, [KIND])  # type: ignore[arg-type]
    rec.index.replace_kind(
        KIND,
        [
            await managed(live, "moving", "models:/fraud@champion"),
            await managed(live, "pinned", "models:/fraud/2"),
            await managed(live, "other", "models:/iris demo1@champion"),
        ],
    )
    assert rec._floating() == {"mlflow": {"fraud", "iris demo1"}}
    await rec.poll_once()  # the first cycle knows no fingerprints: everything is compared once
    searching.calls.clear()
    assert await rec.poll_once() == 0
    assert dict(searching.calls) == {"search_registered_models": 1}  # a quiet cycle: one call
    searching.set_alias("fraud", "champion", 3)
    assert await rec.poll_once() == 1 and kube.touched() == {"moving"}
    # the search, then one lookup for the moved alias (the pinned reference is not looked up)
    assert searching.calls["search_registered_models"] == 2 and searching.lookups == 1


async def test_touches_are_rate_limited(live: Resolver, registry: FakeRegistry, kube: FakeKube) -> None:
    rec = Reconciler(live, kube, [KIND], bucket=TokenBucket(rate=50, burst=5))  # type: ignore[arg-type]
    rec.index.replace_kind(KIND, [await managed(live, f"o{i}", "models:/fraud@champion") for i in range(15)])
    registry.set_alias("fraud", "champion", 3)
    started = time.monotonic()
    assert await rec.compare({"fraud"}) == 15
    # 5 at once, then 10 more at 50/s: at least 0.2 s
    assert time.monotonic() - started >= 0.19


async def test_a_touch_waiting_for_the_rate_limit_serves_a_later_compare_with_its_token(
    live: Resolver, registry: FakeRegistry, kube: FakeKube
) -> None:
    rec = Reconciler(live, kube, [KIND], bucket=TokenBucket(rate=5, burst=1))  # type: ignore[arg-type]
    rec.index.replace_kind(KIND, [await managed(live, f"o{i}", "models:/fraud@champion") for i in range(4)])
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
    reconciler.index.replace_kind(KIND, [await managed(live, "moving", "models:/fraud@champion")])
    registry.set_alias("fraud", "champion", 3)
    reconciler.fence = lambda: False
    assert await reconciler.compare() == 0 and kube.attempts == 0


async def test_a_lost_watch_is_followed_by_a_relist_and_compare(
    reconciler: Reconciler, live: Resolver, registry: FakeRegistry, kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Backoff, "next_delay", lambda self: 0.01)
    kube.listing = [await managed(live, "moving", "models:/fraud@champion")]
    kube.list_failures = [aiohttp.ClientConnectionError("Cannot connect to host")]  # the first list fails
    kube.watch_script = [[], ApiException(status=410, reason="Expired"), aiohttp.ServerDisconnectedError()]
    reconciler.leading = True
    task = asyncio.create_task(reconciler.follow(KIND))
    await asyncio.wait_for(kube.watched.wait(), 5)
    # the failed list, the first list, after 410 (a relist), after the disconnect (a relist)
    assert kube.lists == 4 and reconciler.is_synced()
    # a move made while the watch was down is found by the compare that follows the relist
    registry.set_alias("fraud", "champion", 3)
    kube.watch_script = [aiohttp.ServerDisconnectedError()]
    kube.watched.clear()
    # the quiet watch is waiting; end it the way a dropped connection would
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    task = asyncio.create_task(reconciler.follow(KIND))
    await asyncio.wait_for(kube.watched.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert kube.touched() == {"moving"}


class ScriptedLease:
    """LeaderLease's surface for lead(): holds, then fails as told."""

    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.identity = "me"
        self.retry_period = 0.01
        self.leader = False
        self.reachable = True
        self.holder = "me"
        self.released = False

    async def try_acquire_or_renew(self) -> bool:
        return self.answers.pop(0) if self.answers else False

    def valid(self) -> bool:
        return self.leader and bool(self.answers)

    async def release(self) -> None:
        self.released = True


async def test_a_work_loop_that_dies_ends_lead_with_an_error(
    reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Reconciler, kind: Kind) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(Reconciler, "follow", broken)
    lease = ScriptedLease([True] * 100)
    with pytest.raises(WorkDied, match="KeyError"):
        await asyncio.wait_for(reconciler.lead(lease), 5)  # type: ignore[arg-type]
    assert lease.released and not reconciler.leading


async def test_a_lost_lease_stops_the_work(reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch) -> None:
    stopped = asyncio.Event()

    async def working(self: Reconciler, kind: Kind) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    monkeypatch.setattr(Reconciler, "follow", working)
    lease = ScriptedLease([True, True, True])  # then renewals fail and valid() turns False
    task = asyncio.create_task(reconciler.lead(lease))  # type: ignore[arg-type]
    await asyncio.wait_for(stopped.wait(), 5)
    assert not reconciler.leading and not lease.leader
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert not lease.released  # it was lost, not held: nothing to hand over
