"""The HTTP edge in-process: what reaches admission, and what is refused before it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY as PROMETHEUS

from tests.support.fakes import FakeRegistry, apply_response, seed_uri, webhook_client
from tests.support.reviews import DEMO1, fixture, request
from webhook.admission.decision import admit
from webhook.edge import webhook_app as app_module
from webhook.registry.resolver import Resolver

LIMIT = 64 * 1024
JSON = "application/json"


@pytest.fixture
async def client(registry: FakeRegistry) -> AsyncIterator[httpx.AsyncClient]:
    async with webhook_client(registry, LIMIT) as c:
        yield c


def review_body(obj: dict[str, Any]) -> bytes:
    return orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request(obj)})


async def chunks(body: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def patched(answer: dict[str, Any]) -> dict[str, Any]:
    ops = orjson.loads(base64.b64decode(answer["response"]["patch"]))
    return {op["path"]: op["value"] for op in ops}


async def test_a_review_is_answered_with_its_patch(client: httpx.AsyncClient) -> None:
    r = await client.post("/mutate", content=review_body(fixture("seldon-seed.yaml")), headers={"Content-Type": JSON})
    assert r.status_code == 200
    assert patched(r.json())[DEMO1] == seed_uri("iris demo1", 1)


async def test_a_chunked_body_without_length_is_read_whole(client: httpx.AsyncClient) -> None:
    body = review_body(fixture("seldon-seed.yaml"))
    r = await client.post("/mutate", content=chunks(body, 100), headers={"Content-Type": JSON})
    assert "content-length" not in r.request.headers
    assert r.status_code == 200
    assert patched(r.json())[DEMO1] == seed_uri("iris demo1", 1)


@pytest.mark.parametrize("ctype", ["text/plain", "", "application/json-patch+json"])
async def test_other_content_types_are_400_and_named(client: httpx.AsyncClient, ctype: str) -> None:
    r = await client.post("/mutate", content=b"{}", headers={"Content-Type": ctype} if ctype else {})
    assert r.status_code == 400
    assert (ctype or "none") in r.json()["error"]


async def test_a_content_type_with_parameters_is_json(client: httpx.AsyncClient) -> None:
    body = review_body(fixture("seldon-seed.yaml"))
    r = await client.post("/mutate", content=body, headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 200 and r.json()["response"]["allowed"] is True


async def test_a_declared_length_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    r = await client.post("/mutate", content=b" " * (LIMIT + 1), headers={"Content-Type": JSON})
    assert r.status_code == 413
    assert f"{LIMIT + 1} bytes" in r.json()["error"]


async def test_a_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    r = await client.post("/mutate", content=chunks(b" " * (LIMIT + 1)), headers={"Content-Type": JSON})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413
    assert "exceeds" in r.json()["error"]


async def test_chunks_past_the_limit_are_413_whatever_the_declared_length(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/mutate",
        content=chunks(b" " * (LIMIT + 1)),
        headers={"Content-Type": JSON, "Content-Length": "10", "Transfer-Encoding": "chunked"},
    )
    assert r.status_code == 413
    assert "exceeds" in r.json()["error"]


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"kind": "Pod"}'])
async def test_not_an_admission_review_is_400(client: httpx.AsyncClient, body: bytes) -> None:
    r = await client.post("/mutate", content=body, headers={"Content-Type": JSON})
    assert r.status_code == 400
    assert r.json()["error"]


async def test_an_internal_failure_is_a_denial_not_a_500(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(app_module, "admit", broken)
    r = await client.post("/mutate", content=review_body(fixture("seldon-seed.yaml")), headers={"Content-Type": JSON})
    assert r.status_code == 200
    response = r.json()["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 500
    assert response["status"]["reason"] == "InternalError"
    # the exception's type says where to look; its text (which may quote anything) goes to the log only
    assert "RuntimeError" in response["status"]["message"]
    assert "boom" not in response["status"]["message"]


async def test_metrics_render_the_event_loop_counters(client: httpx.AsyncClient) -> None:
    before = await client.get("/metrics")
    await client.post("/mutate", content=review_body(fixture("seldon-seed.yaml")), headers={"Content-Type": JSON})
    after = await client.get("/metrics")

    def resolved(text: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith('modelpin_resolutions_total{result="resolved"}'))
        return float(line.split()[-1])

    assert "# TYPE modelpin_resolutions_total counter" in after.text
    assert resolved(after.text) == resolved(before.text) + 4


async def test_a_repeated_review_is_decided_again(client: httpx.AsyncClient) -> None:
    """Answers are not remembered: the same review twice runs the whole decision twice."""
    obj = fixture("seldon-seed.yaml")

    def cache_hits(text: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith('modelpin_cache_total{result="hit"}'))
        return float(line.split()[-1])

    first = await client.post("/mutate", content=review_body(obj), headers={"Content-Type": JSON})
    before = cache_hits((await client.get("/metrics")).text)
    body = review_body(obj)
    again = await client.post("/mutate", content=body, headers={"Content-Type": JSON})
    after = cache_hits((await client.get("/metrics")).text)
    uid = orjson.loads(body)["request"]["uid"]
    assert again.json()["response"]["uid"] == uid != first.json()["response"]["uid"]
    assert {**again.json()["response"], "uid": None} == {**first.json()["response"], "uid": None}
    assert after == before + 4  # four distinct references, each looked up in the resolver cache again


async def test_other_methods_on_mutate_are_405(client: httpx.AsyncClient) -> None:
    r = await client.get("/mutate")
    assert r.status_code == 405


def admissions(outcome: str) -> float:
    return PROMETHEUS.get_sample_value("modelpin_admission_seconds_count", {"outcome": outcome}) or 0.0


async def test_the_edge_records_each_outcome_and_admission_alone_records_none(
    client: httpx.AsyncClient, resolver: Resolver
) -> None:
    seed = fixture("seldon-seed.yaml")
    before = {o: admissions(o) for o in ("patched", "unchanged", "denied", "skipped")}
    r = await client.post("/mutate", content=review_body(seed), headers={"Content-Type": JSON})
    out = apply_response(seed, r.json()["response"])
    await client.post("/mutate", content=review_body(out), headers={"Content-Type": JSON})
    bad = {**seed, "metadata": "nope"}
    await client.post("/mutate", content=review_body(bad), headers={"Content-Type": JSON})
    deleted = orjson.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request(seed, "DELETE")}
    )
    await client.post("/mutate", content=deleted, headers={"Content-Type": JSON})
    assert {o: admissions(o) - n for o, n in before.items()} == {
        "patched": 1,
        "unchanged": 1,
        "denied": 1,
        "skipped": 1,
    }
    # the core is request in, response out: called directly (as render does) it records no outcome
    resolved = resolutions("resolved")
    admission = await admit(request(seed), resolver=resolver, settings=resolver.settings)
    assert admission.results == {"resolved": 4}
    assert admissions("patched") - before["patched"] == 1
    assert resolutions("resolved") == resolved


def resolutions(result: str) -> float:
    return PROMETHEUS.get_sample_value("modelpin_resolutions_total", {"result": result}) or 0.0


async def test_the_edge_counts_each_reviews_resolution_results(client: httpx.AsyncClient) -> None:
    seed = fixture("seldon-seed.yaml")
    results = ("resolved", "invalid", "policy", "paused", "recorded")
    before = {r: resolutions(r) for r in results}
    r = await client.post("/mutate", content=review_body(seed), headers={"Content-Type": JSON})
    assert r.json()["response"]["allowed"] is True
    assert {r: resolutions(r) - n for r, n in before.items()} == {r: 4 if r == "resolved" else 0 for r in results}
    broken = apply_response(seed, r.json()["response"])
    graph = broken["spec"]["predictors"][0]["graph"]
    graph["modelUri"] = "{{ broken"
    graph["children"][1]["modelUri"] = '{{ mlflow.s3["fraud/Prod"] }}'
    r = await client.post("/mutate", content=review_body(broken), headers={"Content-Type": JSON})
    assert r.json()["response"]["allowed"] is False
    assert resolutions("invalid") - before["invalid"] == 2
