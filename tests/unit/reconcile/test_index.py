from __future__ import annotations

import json
from typing import Any

from webhook.reconcile.index import Index
from webhook.reconcile.kube import Kind

KIND = Kind.parse("serving.kserve.io/v1beta1/inferenceservices")


def obj(name: str, model: str, version: str, paused: bool = False) -> dict[str, Any]:
    ptr = "/spec/predictor/model/storageUri"
    annotations = {
        "modelpin.io/templates": json.dumps({ptr: f"models:/{model}@champion"}),
        "modelpin.io/resolved": json.dumps(
            {
                ptr: {
                    "registry": "mlflow",
                    "model": model,
                    "selector": "@champion",
                    "version": version,
                    "run_id": "r",
                    "uri": f"s3://b/{version}",
                }
            }
        ),
    }
    if paused:
        annotations["modelpin.io/paused"] = "true"
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "ns", "annotations": annotations},
        "spec": {},
    }


def test_index_by_model_and_version_changes() -> None:
    index = Index()
    index.upsert(KIND, obj("a", "iris", "3"))
    index.upsert(KIND, obj("b", "fraud", "1", paused=True))
    assert [t.obj["metadata"]["name"] for t in index.using({"iris"})] == ["a"]
    assert len(index.using(None)) == 2 and index.using({"fraud"})[0].paused
    tracked, changes = index.upsert(KIND, obj("a", "iris", "4"))
    assert tracked.refs[0].record["version"] == "4"
    assert [c.message() for c in changes] == ["iris: 3 -> 4 (@champion)"]
    _, none = index.upsert(KIND, obj("a", "iris", "4"))
    assert none == []
    index.remove(KIND, obj("a", "iris", "4"))
    assert index.using({"iris"}) == []


def test_relist_replaces_a_kind() -> None:
    index = Index()
    index.upsert(KIND, obj("gone", "iris", "1"))
    index.replace_kind(KIND, [obj("kept", "iris", "1")])
    assert [t.obj["metadata"]["name"] for t in index.using(None)] == ["kept"]


def test_kind_paths() -> None:
    assert KIND.path("ns", "x") == "/apis/serving.kserve.io/v1beta1/namespaces/ns/inferenceservices/x"
    assert Kind("", "v1", "events").path("ns") == "/api/v1/namespaces/ns/events"
