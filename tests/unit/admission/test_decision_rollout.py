"""Admission writes a rollout's traffic split from the state annotation (decision.py with traffic.py)."""

from __future__ import annotations

import copy
from typing import Any

import orjson

from tests.support.admitting import response_to
from tests.support.fakes import FakeRegistry, apply_response, decode_patch, make_settings
from tests.support.reviews import RECONCILER, request
from webhook.admission.traffic import CANARY
from webhook.registry.resolver import Resolver
from webhook.templating import record_annotations as records
from webhook.templating.rollout_annotations import HISTORY, HOLD
from webhook.templating.rollout_policy import ROLLOUT, ROLLOUT_POLICY

V2, V3 = "s3://mlflow/7/r2/artifacts/model", "s3://mlflow/7/r3/artifacts/model"
STORAGE = "/spec/predictor/model/storageUri"
GRAPH = "/spec/predictors/0/graph/modelUri"
TEMPLATE = "models:/fraud@champion"


def isvc(uri: str = TEMPLATE) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "fraud", "namespace": "default"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}},
    }


def sdep(uri: str = TEMPLATE) -> dict[str, Any]:
    return {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {"name": "fraud", "namespace": "default"},
        "spec": {"predictors": [{"name": "default", "replicas": 1, "graph": {"name": "clf", "modelUri": uri}}]},
    }


def rec(version: str, uri: str) -> dict[str, str]:
    return {
        "registry": "mlflow",
        "model": "fraud",
        "selector": "@champion",
        "version": version,
        "run_id": "",
        "uri": uri,
    }


def state(pointer: str, phase: str = "progressing", percent: int = 10) -> str:
    body = {
        "phase": phase,
        "step": 0,
        "percent": percent,
        "from": {pointer: rec("2", V2)},
        "to": {pointer: rec("3", V3)},
        "started": "2026-01-02T03:04:05Z",
        "step_started": "2026-01-02T03:04:05Z",
    }
    return orjson.dumps(body).decode()


def annotate(obj: dict[str, Any], **values: str | None) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    annotations = out["metadata"].setdefault("annotations", {})
    for key, value in values.items():
        name = {"rollout": ROLLOUT, "hold": HOLD, "policy": ROLLOUT_POLICY, "refresh": records.REFRESH}[key]
        if value is None:
            annotations.pop(name, None)
        else:
            annotations[name] = value
    return out


async def created(obj: dict[str, Any], resolver: Resolver) -> dict[str, Any]:
    response = await response_to(request(obj), resolver=resolver)
    return apply_response(obj, response)


async def updated(
    obj: dict[str, Any], old: dict[str, Any], resolver: Resolver, username: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    response = await response_to(request(obj, operation="UPDATE", old=old, username=username), resolver=resolver)
    return apply_response(obj, response), response


async def as_reconciler(stored: dict[str, Any], resolver: Resolver, **values: str | None) -> dict[str, Any]:
    """The reconciler's merge patch of annotations, with a refresh token, admitted."""
    # a token past every cached lookup, as the reconciler's is (it follows the registry change)
    sent = annotate(stored, refresh=str(resolver.clock_ms() + 1), **values)
    out, response = await updated(sent, stored, resolver, RECONCILER)
    assert response["allowed"], response
    return out


async def test_kserve_split_at_the_step_and_the_stable_side_pinned(resolver: Resolver, registry: FakeRegistry) -> None:
    stored = await created(isvc(), resolver)
    assert stored["spec"]["predictor"]["model"]["storageUri"] == V2
    registry.set_alias("fraud", "champion", 3)
    out = await as_reconciler(stored, resolver, rollout=state(STORAGE))
    assert out["spec"]["predictor"]["model"]["storageUri"] == V2
    (entry,) = out["spec"]["canary"]
    assert entry["trafficPercent"] == 10
    # KServe's schema requires a canary's model container to be named
    assert entry["predictor"]["model"] == {
        "modelFormat": {"name": "sklearn"},
        "storageUri": V3,
        "name": "kserve-container",
    }
    assert entry["predictor"]["annotations"] == {CANARY: "true"}
    resolved = orjson.loads(out["metadata"]["annotations"][records.RESOLVED])
    assert resolved[STORAGE]["version"] == "2"  # the records name the stable side
    # 50 %: the same entry, the new share
    fifty = await as_reconciler(out, resolver, rollout=state(STORAGE, percent=50))
    assert [e["trafficPercent"] for e in fifty["spec"]["canary"]] == [50]
    assert fifty["spec"]["predictor"] == out["spec"]["predictor"]


async def test_own_output_readmitted_needs_no_patch(resolver: Resolver, registry: FakeRegistry) -> None:
    stored = await created(isvc(), resolver)
    registry.set_alias("fraud", "champion", 3)
    out = await as_reconciler(stored, resolver, rollout=state(STORAGE))
    response = await response_to(request(out, operation="UPDATE", old=out), resolver=resolver)
    assert decode_patch(response) == []
    assert response["allowed"] is True


async def test_a_reapply_from_git_mid_rollout_gives_the_stored_object(
    resolver: Resolver, registry: FakeRegistry
) -> None:
    stored = await created(isvc(), resolver)
    registry.set_alias("fraud", "champion", 3)
    stored = await as_reconciler(stored, resolver, rollout=state(STORAGE))
    # what kubectl apply / server-side apply sends: git's spec, the annotations git does not hold kept
    sent = copy.deepcopy(stored)
    sent["spec"] = isvc()["spec"]
    out, response = await updated(sent, stored, resolver, "alice")
    assert out == stored
    assert "warnings" not in response
    assert out["metadata"]["annotations"][HISTORY] == stored["metadata"]["annotations"][HISTORY]


async def test_seldon_split_shares_the_predictor_traffic(resolver: Resolver, registry: FakeRegistry) -> None:
    stored = await created(sdep(), resolver)
    registry.set_alias("fraud", "champion", 3)
    out = await as_reconciler(stored, resolver, rollout=state(GRAPH))
    stable, canary = out["spec"]["predictors"]
    assert (stable["name"], stable["traffic"], stable["graph"]["modelUri"]) == ("default", 90, V2)
    assert (canary["name"], canary["traffic"], canary["graph"]["modelUri"]) == ("default-canary", 10, V3)
    _, response = await updated(out, out, resolver, "alice")
    assert decode_patch(response) == []
    git = copy.deepcopy(out)
    git["spec"] = sdep()["spec"]
    reapplied, _ = await updated(git, out, resolver, "alice")
    assert reapplied == out
    promoted = await as_reconciler(out, resolver, rollout=state(GRAPH, "promoted", 100))
    (only,) = promoted["spec"]["predictors"]
    assert only["graph"]["modelUri"] == V3
    assert "traffic" not in only and "annotations" not in only


async def test_promoted_takes_the_new_version_without_a_canary(resolver: Resolver, registry: FakeRegistry) -> None:
    stored = await created(isvc(), resolver)
    registry.set_alias("fraud", "champion", 3)
    split = await as_reconciler(stored, resolver, rollout=state(STORAGE))
    out = await as_reconciler(split, resolver, rollout=state(STORAGE, "promoted", 100))
    assert out["spec"] == isvc(V3)["spec"]
    history = orjson.loads(out["metadata"]["annotations"][HISTORY])
    assert [(e["version"], e["cause"]) for e in history[STORAGE]] == [("2", "created"), ("3", "moved")]


async def test_rolled_back_under_its_hold_runs_the_old_version(resolver: Resolver, registry: FakeRegistry) -> None:
    stored = await created(isvc(), resolver)
    registry.set_alias("fraud", "champion", 3)
    split = await as_reconciler(stored, resolver, rollout=state(STORAGE))
    hold = orjson.dumps(
        {"reason": "rollout of version 3 rolled-back", "since": "2026-01-02T03:04:05Z", "versions": {STORAGE: "2"}}
    ).decode()
    out = await as_reconciler(split, resolver, rollout=state(STORAGE, "rolled-back", 0), hold=hold)
    assert out["spec"] == isvc(V2)["spec"]


async def test_a_state_written_by_someone_else_is_set_back(resolver: Resolver, registry: FakeRegistry) -> None:
    stored = await created(isvc(), resolver)
    registry.set_alias("fraud", "champion", 3)
    sent = annotate(stored, rollout=state(STORAGE))
    out, response = await updated(sent, stored, resolver, "mallory")
    assert ROLLOUT not in out["metadata"]["annotations"]
    assert "canary" not in out["spec"]
    assert any(f"{ROLLOUT} is written only by {RECONCILER}: removed" in w for w in response["warnings"])
    # once the reconciler wrote it, someone else's change is set back to the stored state
    split = await as_reconciler(stored, resolver, rollout=state(STORAGE))
    forged = annotate(split, rollout=state(STORAGE, percent=90))
    out, response = await updated(forged, split, resolver, "mallory")
    assert out == split


async def test_a_hold_wins_over_the_split(resolver: Resolver, registry: FakeRegistry) -> None:
    stored = await created(isvc(), resolver)
    registry.set_alias("fraud", "champion", 3)
    split = await as_reconciler(stored, resolver, rollout=state(STORAGE))
    held = annotate(split, hold=orjson.dumps({"reason": "incident", "since": "2026-01-02T03:04:05Z"}).decode())
    out, response = await updated(held, split, resolver, "alice")
    assert "canary" not in out["spec"]
    assert out["spec"]["predictor"]["model"]["storageUri"] == V2
    assert any("split is not written while" in w for w in response["warnings"])


async def test_a_split_that_cannot_be_written_is_a_warning(resolver: Resolver, registry: FakeRegistry) -> None:
    obj = isvc()
    obj["spec"]["canary"] = [{"predictor": {"model": {"storageUri": "s3://mine/x"}}, "trafficPercent": 95}]
    stored = await created(obj, resolver)
    registry.set_alias("fraud", "champion", 3)
    sent = annotate(stored, refresh=str(resolver.clock_ms()), rollout=state(STORAGE))
    out, response = await updated(sent, stored, resolver, RECONCILER)
    assert out["spec"] == stored["spec"]
    assert any("spec.canary already carries 95 % of traffic" in w for w in response["warnings"])


async def test_the_policy_annotation_chooses_canary_traffic_percent(resolver: Resolver, registry: FakeRegistry) -> None:
    stored = await created(annotate(isvc(), policy="steps: [10, 50]\nkserve: canary-traffic-percent"), resolver)
    registry.set_alias("fraud", "champion", 3)
    out = await as_reconciler(stored, resolver, rollout=state(STORAGE))
    assert out["spec"]["predictor"]["model"]["storageUri"] == V3
    assert out["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert "canary" not in out["spec"]
    _, response = await updated(out, out, resolver, "alice")
    assert decode_patch(response) == []


async def test_the_namespace_policy_chooses_the_mode_and_a_bad_annotation_is_named(registry: FakeRegistry) -> None:
    settings = make_settings(namespaces={"*": {"rollout": {"steps": [10], "kserve": "canary-traffic-percent"}}})
    resolver = Resolver(settings, {"mlflow": registry})
    stored = await created(annotate(isvc(), policy="steps: [50, 10]"), resolver)
    registry.set_alias("fraud", "champion", 3)
    sent = annotate(stored, refresh="1", rollout=state(STORAGE))
    response = await response_to(request(sent, operation="UPDATE", old=stored, username=RECONCILER), resolver=resolver)
    out = apply_response(sent, response)
    assert out["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert any(w.startswith(f"ignored {ROLLOUT_POLICY}: steps: ") for w in response["warnings"])


async def test_a_damaged_state_is_a_warning_and_no_split(resolver: Resolver, registry: FakeRegistry) -> None:
    stored = await created(isvc(), resolver)
    sent = annotate(stored, refresh="1", rollout='{"phase": "progressing"')
    out, response = await updated(sent, stored, resolver, RECONCILER)
    assert out["spec"] == stored["spec"]
    assert f"ignored annotation {ROLLOUT}: not JSON" in response["warnings"]


async def test_a_field_edited_to_another_model_mid_rollout_leaves_the_split(
    resolver: Resolver, registry: FakeRegistry
) -> None:
    stored = await created(isvc(), resolver)
    registry.set_alias("fraud", "champion", 3)
    split = await as_reconciler(stored, resolver, rollout=state(STORAGE))
    edited = copy.deepcopy(split)
    edited["spec"] = isvc('{{ mlflow.blob["iris demo1"] }}')["spec"]
    out, response = await updated(edited, split, resolver, "alice")
    assert "canary" not in out["spec"]
    assert out["spec"]["predictor"]["model"]["storageUri"].endswith("/run-1-1/artifacts/model")
    assert any("left out of the rollout" in w and "names another model" in w for w in response["warnings"])


async def test_a_sender_without_any_modelpin_annotation_keeps_the_rollout(
    resolver: Resolver, registry: FakeRegistry
) -> None:
    # the manifest as git has it, applied over a split object: the stored state is still read
    stored = await created(isvc(), resolver)
    registry.set_alias("fraud", "champion", 3)
    split = await as_reconciler(stored, resolver, rollout=state(STORAGE))
    bare = isvc()
    assert not any(key.startswith("modelpin.io/") for key in bare["metadata"].get("annotations", {}))
    out, response = await updated(bare, split, resolver, "alice")
    assert out["metadata"]["annotations"][ROLLOUT] == split["metadata"]["annotations"][ROLLOUT]
    assert out["spec"] == split["spec"]
    assert any(f"{ROLLOUT} is written only by" in w for w in response["warnings"])
