"""AdmissionReviews and patch decoding for tests."""

from __future__ import annotations

import base64
import copy
import uuid
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import yaml

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((FIXTURES / name).read_text())
    return doc


def make_review(
    obj: dict[str, Any],
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    namespace: str = "default",
    dry_run: bool = False,
    username: str | None = None,
) -> dict[str, Any]:
    group, _, version = str(obj["apiVersion"]).rpartition("/")
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": obj["kind"]},
        "resource": {"group": group, "version": version, "resource": obj["kind"].lower() + "s"},
        "namespace": namespace,
        "operation": operation,
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
    }
    if username is not None:
        request["userInfo"] = {"username": username, "groups": ["system:authenticated"]}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def patch_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    patch = response["response"].get("patch")
    return orjson.loads(base64.b64decode(patch)) if patch else []


def apply(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    assert response["response"]["allowed"], response["response"].get("status")
    ops = patch_of(response)
    return jsonpatch.apply_patch(copy.deepcopy(obj), ops) if ops else copy.deepcopy(obj)


def at(obj: Any, pointer: str) -> Any:
    return jsonpatch.JsonPointer(pointer).resolve(obj)


GRAPH = "/spec/predictors/0/graph"
SEED_POINTERS = {
    f"{GRAPH}/children/0/modelUri": "iris demo1",
    f"{GRAPH}/children/0/children/0/modelUri": "iris demo2",
    f"{GRAPH}/children/1/modelUri": "iris demo3",
    f"{GRAPH}/modelUri": "iris demo4",
}
DEMO1 = f"{GRAPH}/children/0/modelUri"


def request(
    obj: dict[str, Any] | None,
    operation: str = "CREATE",
    namespace: str = "default",
    dry_run: bool = False,
    kind: dict[str, str] | None = None,
    old: dict[str, Any] | None = None,
    username: str | None = None,
) -> dict[str, Any]:
    if kind is None:
        assert obj is not None
        group, _, version = str(obj["apiVersion"]).rpartition("/")
        kind = {"group": group, "version": version, "kind": obj["kind"]}
    req: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": kind,
        "namespace": namespace,
        "operation": operation,
        "dryRun": dry_run,
    }
    if obj is not None:
        req["object"] = obj
    if old is not None:
        req["oldObject"] = old
    if username is not None:
        req["userInfo"] = {"username": username, "groups": ["system:authenticated"]}
    return req


# The reconciler's identity in the default settings (Settings.reconciler_usernames).
RECONCILER = "system:serviceaccount:modelpin-system:modelpin-reconciler"
