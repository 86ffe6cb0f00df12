"""The reconciler's endpoints: delivery size limit, header checks first, readiness that tells the truth."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from kubernetes_asyncio import client as k8s

from tests.support.fakes import make_settings
from webhook.edge.reconciler_app import ReconcilerState, create_app
from webhook.reconcile.deliveries import Verifier, sign
from webhook.reconcile.kube import Kind, Kube
from webhook.reconcile.leadership import LeaderLease
from webhook.reconcile.reconciler import Reconciler
from webhook.registry.resolver import Resolver

SECRET = "s3cret"
KIND = Kind.parse("serving.kserve.io/v1beta1/inferenceservices")


@pytest.fixture
def state() -> ReconcilerState:
    kube = Kube(k8s.Configuration(host="http://127.0.0.1:9"), timeout=1)
    rec = Reconciler(Resolver(make_settings(), {}), kube, [KIND])
    lease = LeaderLease(kube, "ns", "l", "me", 4)
    return ReconcilerState(rec, lease, Verifier(SECRET), max_body=1024)


def headers(body: bytes, delivery: str = "d1") -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": sign(SECRET, delivery, ts, body),
        "Content-Type": "application/json",
    }


async def post(state: ReconcilerState, body: bytes, hdrs: dict[str, str]) -> httpx.Response:
    # the app alone, without its lifespan (which would start leading)
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
        return await client.post("/mlflow/events", content=body, headers=hdrs)


async def get(state: ReconcilerState, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
        return await client.get(path)


async def test_a_large_body_is_refused_with_413(state: ReconcilerState) -> None:
    body = json.dumps({"entity": "model_version_alias", "action": "created", "data": {"x": "y" * 4000}}).encode()
    answer = await post(state, body, headers(body))
    assert answer.status_code == 413


async def test_an_unsigned_delivery_is_refused_before_its_body_is_read(state: ReconcilerState) -> None:
    body = b"x" * 100_000  # over the limit: a 401, not a 413, shows the headers were judged first
    answer = await post(state, body, {"Content-Type": "application/json"})
    assert answer.status_code == 401


async def test_readiness(state: ReconcilerState) -> None:
    answer = await get(state, "/readyz")
    assert answer.status_code == 503 and answer.json()["reachable"] is False
    state.lease.reachable = True
    body: dict[str, Any] = (await get(state, "/readyz")).json()
    assert body["status"] == "standing by" and body["leader"] is False
    state.reconciler.leading = True
    answer = await get(state, "/readyz")
    assert answer.status_code == 503 and answer.json()["status"] == "leading, not synced yet"
    state.reconciler.synced.add(KIND)
    answer = await get(state, "/readyz")
    assert answer.status_code == 200 and answer.json()["synced"] is True
    state.failed = "KeyError('bug')"
    assert (await get(state, "/readyz")).status_code == 503
