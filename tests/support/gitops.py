"""Templated manifests as a GitOps tool holds them, and checks of what the apiserver stored for them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.cluster import NS, obj_json
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog


def manifests(prefix: str) -> list[dict[str, Any]]:
    """A Seldon seed graph (four seed-form templates) and an InferenceService (models:/ and a modelcar)."""
    seed = obj_json("seldon-seed.yaml", name=f"{prefix}-seed")
    isvc = obj_json("isvc-legacy.yaml", name=f"{prefix}-isvc")
    return [seed, isvc]


def live(cluster: ControlPlane, doc: dict[str, Any]) -> dict[str, Any]:
    out = cluster.kubectl("get", doc["kind"], doc["metadata"]["name"], "-n", NS, "-o", "json")
    obj: dict[str, Any] = json.loads(out.stdout)
    return obj


def versions(cluster: ControlPlane, docs: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(o["metadata"]["resourceVersion"], o["metadata"]["generation"]) for o in (live(cluster, d) for d in docs)]


def assert_resolved(cluster: ControlPlane, docs: list[dict[str, Any]], catalog: Catalog) -> None:
    # Messages spelled out: pytest rewrites asserts in test modules only, not in this helper.
    for doc in docs:
        stored = live(cluster, doc)
        spec = json.dumps(stored["spec"])
        assert "{{" not in spec and "models:/" not in spec, f"{doc['kind']} stored unresolved: {spec}"
        labels = stored["metadata"].get("labels", {})
        assert labels.get("modelpin.io/managed") == "true", f"{doc['kind']} labels: {labels}"
    isvc = live(cluster, docs[1])
    predictor = isvc["spec"]["predictor"]["sklearn"]["storageUri"]
    assert predictor == catalog.location("fraud", "2"), f"{predictor} != {catalog.location('fraud', '2')}"
    transformer = isvc["spec"]["transformer"]["containers"][0]["env"][0]["value"]
    assert transformer.startswith("oci://quay.io/rhoai/jukebox:"), transformer


def write(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs))
    return path
