"""The reconciler's fakes: an apiserver that records touches and scripts lists and watches.

Objects are the webhook's own output for the fake registry, so the index reads
the records admission really writes.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import pytest

from tests.support.admitting import response_to
from tests.support.fakes import FakeRegistry, apply_response, make_settings
from webhook.admission.review import AdmissionRequest
from webhook.reconcile.index import Index, Key
from webhook.reconcile.kube import Kind
from webhook.reconcile.reconciler import Reconciler
from webhook.registry.resolver import Resolver
from webhook.templating import record_annotations as records

KIND = Kind.parse("serving.kserve.io/v1beta1/inferenceservices")


class FakeKube:
    """merge_patch and event recorded, list and watch scripted; failures are the library's real exceptions."""

    timeout = 5.0

    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.deadlines: list[float | None] = []
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
        self.deadlines.append(deadline)
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
async def reconciler(live: Resolver, kube: FakeKube) -> AsyncIterator[Reconciler]:
    rec = Reconciler(live, kube, [KIND])  # type: ignore[arg-type]
    yield rec
    await rec.touches.stop()  # touches still waiting for the watch to confirm them


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
    return apply_response(obj, await response_to(request, resolver=resolver))


def refreshed(obj: Mapping[str, Any], token: int) -> dict[str, Any]:
    """The object as stored after a touch the webhook never saw (failurePolicy Ignore): the token, the old URI."""
    stored = copy.deepcopy(dict(obj))
    stored["metadata"]["annotations"][records.REFRESH] = str(token)
    return stored


def token_of(patch: Mapping[str, Any]) -> int:
    return int(patch["metadata"]["annotations"][records.REFRESH])


def load(index: Index, objs: Iterable[Mapping[str, Any]]) -> None:
    """What a relist leaves: these objects, and no others of the kind."""
    listed: set[Key] = set()
    for obj in objs:
        tracked, _ = index.upsert(KIND, obj)
        listed.add(tracked.key)
    index.retain(KIND, listed)
