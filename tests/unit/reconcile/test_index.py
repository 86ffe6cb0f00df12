from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson

from webhook.reconcile.index import Index, read_rollout
from webhook.reconcile.kube import Kind
from webhook.reconcile.rollouts import COMMAND
from webhook.templating.rollout_policy import ROLLOUT, ROLLOUT_POLICY, Phase

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
    assert [t.name for t in index.using({"iris"})] == ["a"]
    assert len(index.using(None)) == 2 and index.using({"fraud"})[0].paused
    tracked, changes = index.upsert(KIND, obj("a", "iris", "4"))
    assert tracked.refs[0].record["version"] == "4"
    assert [c.message() for c in changes] == ["iris: 3 -> 4 (@champion)"]
    _, none = index.upsert(KIND, obj("a", "iris", "4"))
    assert none == []
    index.remove(KIND, obj("a", "iris", "4"))
    assert index.using({"iris"}) == []


def test_kind_api_version() -> None:
    assert KIND.api_version == "serving.kserve.io/v1beta1"
    assert Kind("", "v1", "events").api_version == "v1"


def test_only_what_the_reconciler_needs_is_kept() -> None:
    index = Index()
    big = obj("a", "iris", "3")
    big["metadata"]["uid"] = "u-1"
    big["spec"] = {"predictor": {"model": {"storageUri": "s3://b/3"}}, "secretish": "x" * 10_000}
    tracked, _ = index.upsert(KIND, big)
    assert tracked.involved() == {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "namespace": "ns",
        "name": "a",
        "uid": "u-1",
    }
    assert not hasattr(tracked, "obj") and "secretish" not in repr(tracked)


def test_retain_drops_what_a_relist_did_not_return() -> None:
    index = Index()
    kept, _ = index.upsert(KIND, obj("kept", "iris", "1"))
    index.upsert(KIND, obj("gone", "iris", "1"))
    assert index.retain(KIND, {kept.key}) == [(KIND, "ns", "gone")]
    assert [t.name for t in index.using(None)] == ["kept"]


def test_holds_are_read_and_the_objects_carrying_one_listed() -> None:
    index = Index()
    held = obj("held", "fraud", "2")
    until = "2030-01-01T00:00:00Z"
    held["metadata"]["annotations"]["modelpin.io/hold"] = json.dumps(
        {"reason": "incident", "since": "2029-12-31T00:00:00Z", "until": until, "by": "alice", "versions": {}}
    )
    damaged = obj("damaged", "fraud", "2")
    damaged["metadata"]["annotations"]["modelpin.io/hold"] = "{not json"
    for o in (held, damaged, obj("plain", "fraud", "2"), obj("paused", "fraud", "2", paused=True)):
        index.upsert(KIND, o)
    assert [t.name for t in index.holding()] == ["held"]  # a damaged hold reads as none, as admission reads it
    (t,) = index.holding()
    assert t.hold is not None and t.hold.reason == "incident"
    assert t.held(dt.datetime(2029, 12, 31, 12, tzinfo=dt.UTC))
    assert not t.held(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))  # the hold ends at its until
    paused = index.get((KIND, "ns", "paused"))
    assert paused is not None and paused.held(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    index.upsert(KIND, obj("held", "fraud", "2"))  # the hold removed
    assert index.holding() == []


# --- the rollout annotations -----------------------------------------------------------------------


def test_an_event_older_than_the_drivers_write_does_not_undo_it() -> None:
    index = Index()
    field = "/spec/predictor/model/storageUri"
    state = {
        "phase": "progressing",
        "percent": 10,
        "from": {field: {"uri": "s3://a/2", "version": "2"}},
        "to": {field: {"uri": "s3://a/3", "version": "3"}},
        "started": "2026-01-02T03:04:05Z",
        "step_started": "2026-01-02T03:04:05Z",
    }

    def rolled(version: str, phase: str) -> dict[str, Any]:
        meta = {"name": "x", "namespace": "team", "resourceVersion": version}
        meta["annotations"] = {ROLLOUT: orjson.dumps({**state, "phase": phase}).decode()}  # type: ignore[assignment]
        return {"kind": "InferenceService", "metadata": meta}

    key = (KIND, "team", "x")
    index.upsert(KIND, rolled("10", "progressing"))
    assert index.changed.is_set() and [t.key for t in index.rolling()] == [key]
    index.changed.clear()
    index.wrote(key, None, rolled("12", "promoted"))
    assert index.changed.is_set()
    index.changed.clear()
    index.upsert(KIND, rolled("11", "progressing"))
    t = index.get(key)
    assert t is not None and t.rollout is not None and t.rollout.state is not None
    assert t.rollout.state.phase is Phase.PROMOTED and not index.changed.is_set()
    index.upsert(KIND, {"kind": "InferenceService", "metadata": {"name": "x", "namespace": "team"}})
    t = index.get(key)
    assert t is not None and t.rollout is None and index.rolling() == []  # no rollout annotations: nothing kept


def test_a_write_without_an_answer_keeps_the_policy_and_request_seen() -> None:
    index = Index()
    meta = {"name": "x", "namespace": "team", "annotations": {ROLLOUT_POLICY: '{"steps": [10]}'}}
    index.upsert(KIND, {"kind": "InferenceService", "metadata": meta})
    index.wrote((KIND, "team", "x"), None, None)
    t = index.get((KIND, "team", "x"))
    assert t is not None and t.rollout is not None and t.rollout.policy is not None
    assert t.rollout.policy.steps == [10]
    index.remove(KIND, {"metadata": meta})
    assert index.rolling() == []


def test_damaged_rollout_annotations_read_as_absent() -> None:
    meta = {"annotations": {ROLLOUT: "{", ROLLOUT_POLICY: "steps: [50, 10]", COMMAND: '{"command": "launch"}'}}
    rollout = read_rollout({"metadata": meta})
    assert rollout is not None and (rollout.state, rollout.policy, rollout.request) == (None, None, None)
