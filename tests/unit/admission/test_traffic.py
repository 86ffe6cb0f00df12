"""The traffic split the webhook writes: a pure function of the object as sent and the rollout state."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from webhook.admission.traffic import CANARY, split, strip
from webhook.templating.rollout_policy import State

OLD, NEW = "s3://models/iris/3", "s3://models/iris/4"


def record(version: str, uri: str) -> dict[str, str]:
    return {
        "registry": "mlflow",
        "model": "iris",
        "selector": "@champion",
        "version": version,
        "run_id": "",
        "uri": uri,
    }


def state(pointers: list[str], percent: int = 10, phase: str = "progressing") -> State:
    return State.model_validate(
        {
            "phase": phase,
            "step": 0,
            "percent": percent,
            "from": {p: record("3", OLD) for p in pointers},
            "to": {p: record("4", NEW) for p in pointers},
            "started": "2026-01-02T03:04:05Z",
            "step_started": "2026-01-02T03:04:05Z",
        }
    )


def isvc() -> dict[str, Any]:
    return {
        "predictor": {
            "minReplicas": 1,
            "model": {"modelFormat": {"name": "sklearn"}, "storageUri": OLD},
            "storageUris": [{"uri": OLD, "mountPath": "/mnt/a"}],
        },
        "transformer": {"containers": [{"name": "t", "env": [{"name": "STORAGE_URI", "value": OLD}]}]},
    }


def sdep(traffic: int | None = None) -> dict[str, Any]:
    predictor: dict[str, Any] = {"name": "default", "graph": {"name": "clf", "modelUri": OLD}, "replicas": 1}
    if traffic is not None:
        predictor["traffic"] = traffic
    return {"predictors": [predictor]}


STORAGE = "/spec/predictor/model/storageUri"
URIS = "/spec/predictor/storageUris/0/uri"
TRANSFORMER = "/spec/transformer/containers/0/env/0/value"
GRAPH = "/spec/predictors/0/graph/modelUri"


def roundtrip(kind: str, spec: dict[str, Any], s: State, mode: str = "canary") -> dict[str, Any]:
    """Admit ``spec``, then admit the output again: the second admission must change nothing."""
    first = split(kind, strip(kind, spec), s, mode).spec  # type: ignore[arg-type]
    again = split(kind, strip(kind, first), s, mode).spec  # type: ignore[arg-type]
    assert again == first
    return first


def test_kserve_canary_entry_copies_the_predictor_with_the_new_uris() -> None:
    sent = isvc()
    result = split("InferenceService", sent, state([STORAGE, URIS]))
    assert result.problem is None and result.unsplit == ()
    out = result.spec
    assert out["predictor"] == sent["predictor"], "the stable predictor keeps the old version"
    (entry,) = out["canary"]
    assert entry["trafficPercent"] == 10
    assert entry["predictor"]["model"]["storageUri"] == NEW
    assert entry["predictor"]["storageUris"][0]["uri"] == NEW
    assert entry["predictor"]["minReplicas"] == 1
    assert entry["predictor"]["annotations"] == {CANARY: "true"}
    assert sent == isvc(), "the input is not changed"


def test_kserve_split_is_idempotent_and_strips_back_to_git() -> None:
    s = state([STORAGE])
    out = roundtrip("InferenceService", isvc(), s)
    assert strip("InferenceService", out) == isvc()


def test_kserve_a_step_up_changes_only_the_canary_share() -> None:
    at10 = split("InferenceService", isvc(), state([STORAGE], 10)).spec
    at50 = split("InferenceService", strip("InferenceService", at10), state([STORAGE], 50)).spec
    assert at50["canary"][0]["trafficPercent"] == 50
    at50["canary"][0]["trafficPercent"] = 10
    assert at50 == at10


def test_kserve_users_own_canary_entries_are_kept() -> None:
    sent = isvc()
    theirs = {"predictor": {"model": {"storageUri": "s3://other/1"}}, "trafficPercent": 20}
    sent["canary"] = [theirs]
    out = roundtrip("InferenceService", sent, state([STORAGE]))
    assert out["canary"][0] == theirs and len(out["canary"]) == 2
    assert strip("InferenceService", out)["canary"] == [theirs]


def test_kserve_no_split_past_100_percent() -> None:
    sent = isvc()
    sent["canary"] = [{"predictor": {}, "trafficPercent": 95}]
    result = split("InferenceService", sent, state([STORAGE], 10))
    assert result.spec == sent
    assert result.problem == "spec.canary already carries 95 % of traffic"
    assert result.unsplit == (STORAGE,)


@pytest.mark.parametrize("entry", [{"predictor": {}, "trafficPercent": "ten"}, {"predictor": {}}, "junk"])
def test_kserve_a_malformed_canary_entry_is_a_problem_not_a_crash(entry: object) -> None:
    sent = isvc()
    sent["canary"] = [entry]
    result = split("InferenceService", sent, state([STORAGE], 10))
    assert result.spec == sent
    assert result.problem == "spec.canary holds an entry without an integer trafficPercent"


def test_kserve_fields_outside_the_predictor_are_named_as_unsplit() -> None:
    result = split("InferenceService", isvc(), state([STORAGE, TRANSFORMER]))
    assert result.unsplit == (TRANSFORMER,)
    assert result.spec["transformer"] == isvc()["transformer"]


def test_kserve_canary_traffic_percent_mode() -> None:
    sent = isvc()
    s = state([STORAGE], 10)
    out = roundtrip("InferenceService", sent, s, "canary-traffic-percent")
    assert "canary" not in out
    assert out["predictor"]["model"]["storageUri"] == NEW
    assert out["predictor"]["canaryTrafficPercent"] == 10
    assert strip("InferenceService", out) == sent


def test_kserve_canary_traffic_percent_restores_the_users_own_value() -> None:
    sent = isvc()
    sent["predictor"]["canaryTrafficPercent"] = 100
    sent["predictor"]["annotations"] = {"team": "fraud"}
    out = split("InferenceService", sent, state([STORAGE], 50), "canary-traffic-percent").spec
    assert out["predictor"]["canaryTrafficPercent"] == 50
    assert out["predictor"]["annotations"]["team"] == "fraud"
    assert strip("InferenceService", out) == sent


def test_seldon_a_canary_predictor_carries_the_share() -> None:
    out = roundtrip("SeldonDeployment", sdep(), state([GRAPH], 10))
    stable, canary = out["predictors"]
    assert (stable["name"], stable["traffic"], stable["graph"]["modelUri"]) == ("default", 90, OLD)
    assert (canary["name"], canary["traffic"], canary["graph"]["modelUri"]) == ("default-canary", 10, NEW)
    assert CANARY in canary["annotations"]
    assert strip("SeldonDeployment", out) == sdep(), "traffic unset again, as in git"


def test_seldon_an_explicit_traffic_is_restored() -> None:
    out = split("SeldonDeployment", sdep(100), state([GRAPH], 50)).spec
    assert [p["traffic"] for p in out["predictors"]] == [50, 50]
    assert strip("SeldonDeployment", out) == sdep(100)


def test_seldon_a_predictor_sharing_traffic_splits_its_own_share() -> None:
    sent = sdep(40)
    sent["predictors"].insert(0, {"name": "other", "graph": {"name": "x", "modelUri": "s3://o/1"}, "traffic": 60})
    pointer = "/spec/predictors/1/graph/modelUri"
    out = roundtrip("SeldonDeployment", sent, state([pointer], 10))
    assert [(p["name"], p["traffic"]) for p in out["predictors"]] == [
        ("other", 60),
        ("default", 36),
        ("default-canary", 4),
    ]


def test_seldon_a_traffic_changed_in_git_mid_rollout_is_the_users() -> None:
    out = split("SeldonDeployment", sdep(), state([GRAPH], 10)).spec
    out["predictors"][0]["traffic"] = 70
    assert strip("SeldonDeployment", out)["predictors"] == [{**sdep()["predictors"][0], "traffic": 70}]


def test_seldon_a_one_percent_step_still_runs_the_new_version() -> None:
    out = split("SeldonDeployment", sdep(10), state([GRAPH], 1)).spec
    assert [p["traffic"] for p in out["predictors"]] == [9, 1]


def test_seldon_a_shadow_is_not_split() -> None:
    sent = sdep()
    sent["predictors"][0]["shadow"] = True
    result = split("SeldonDeployment", sent, state([GRAPH]))
    assert result.spec == sent and result.problem is not None and "shadow" in result.problem


@pytest.mark.parametrize("phase", ["promoted", "rolled-back", "aborted"])
def test_after_the_rollout_the_split_goes(phase: str) -> None:
    during = split("SeldonDeployment", sdep(), state([GRAPH], 50)).spec
    after = state([GRAPH], 100 if phase == "promoted" else 0, phase)
    assert split("SeldonDeployment", strip("SeldonDeployment", during), after).spec == sdep()


def test_no_state_no_split() -> None:
    assert split("InferenceService", isvc(), None).spec == isvc()


def test_a_kind_without_traffic_names_every_field_as_unsplit() -> None:
    spec = {"storageUri": OLD}
    result = split("TrainedModel", spec, state(["/spec/storageUri"]))
    assert result.spec == spec and result.unsplit == ("/spec/storageUri",)
    assert result.problem == "TrainedModel has no traffic split; the new version runs at promotion"


def test_a_pointer_with_escaped_tokens_is_followed() -> None:
    sent = isvc()
    sent["predictor"]["model"]["a/b"] = OLD
    out = split("InferenceService", sent, state(["/spec/predictor/model/a~1b"])).spec
    assert out["canary"][0]["predictor"]["model"]["a/b"] == NEW


def test_a_damaged_mark_is_not_ours() -> None:
    sent = isvc()
    sent["canary"] = [{"predictor": {"annotations": {"other": "x"}}, "trafficPercent": 5}, "junk"]
    assert strip("InferenceService", copy.deepcopy(sent)) == sent


def test_a_kserve_canary_names_its_model_container_as_the_schema_requires() -> None:
    spec = isvc()
    spec["predictor"]["sklearn"] = {"storageUri": OLD}
    spec["predictor"]["model"]["name"] = "mine"
    out = split("InferenceService", spec, state([STORAGE])).spec
    canary = out["canary"][0]["predictor"]
    assert canary["model"]["name"] == "mine"  # a name of the user's own is kept
    assert canary["sklearn"]["name"] == "kserve-container"
    assert "name" not in out["predictor"]["sklearn"]  # the stable side is as sent
    assert strip("InferenceService", out) == spec
