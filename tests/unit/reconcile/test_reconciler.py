"""The reconciler's decisions: whom to touch, how hard to try, what to report.

Objects are the webhook's own output for the fake registry, so the index reads
the records admission really writes.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.support.fakes import FakeRegistry, apply_response, make_settings
from webhook.admission.decision import admit
from webhook.model import record_annotations as records
from webhook.reconcile.kube import ApiError, Kind
from webhook.reconcile.reconciler import Reconciler
from webhook.registry.resolver import Resolver

KIND = Kind.parse("serving.kserve.io/v1beta1/inferenceservices")


class FakeKube:
    """merge_patch and event, recorded; merge_patch fails with the queued errors first."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.events: list[tuple[str, str, str, str]] = []
        self.failures: list[Exception] = []
        self.attempts = 0

    async def merge_patch(self, kind: Kind, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.patches.append((name, patch))
        return {}

    async def event(self, obj: dict[str, Any], kind_name: str, event_type: str, reason: str, message: str) -> None:
        self.events.append((obj["metadata"]["name"], event_type, reason, message))

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
    request = {
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
        ([ApiError(500, "etcd timeout"), ApiError(409, "conflict")], True, 3),  # retried, then done
        ([OSError("connection reset")], True, 2),
        ([ApiError(403, "denied by the webhook")], False, 1),  # a refusal does not pass on retry
        ([ApiError(404, "gone")], False, 1),
        ([ApiError(503, "down")] * 5, False, 5),  # gives up after five attempts
    ],
    ids=["5xx-then-conflict", "network", "refused", "deleted", "exhausted"],
)
async def test_touch_retries_what_may_pass_and_stops_on_what_will_not(
    reconciler: Reconciler,
    live: Resolver,
    registry: FakeRegistry,
    kube: FakeKube,
    failures: list[Exception],
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
    assert delays == [0.2 * 2**i for i in range(len(delays))]  # backoff doubles


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
