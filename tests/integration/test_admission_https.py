"""Real HTTPS AdmissionReviews to a real ``modelpin serve`` backed by a real ``mlflow server``.

Every expected URI is computed from what the registry says through the
mlflow client, never from modelpin's own code.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.catalog import PROXIED_ROOT, Catalog
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, concurrent_reviews, isvc, modelpin_config
from tests.support.reviews import RECONCILER, apply, at, fixture, make_review, patch_of

pytestmark = pytest.mark.integration

SEED_POINTERS = {
    "/spec/predictors/0/graph/modelUri": "iris demo4",
    "/spec/predictors/0/graph/children/0/modelUri": "iris demo1",
    "/spec/predictors/0/graph/children/0/children/0/modelUri": "iris demo2",
    "/spec/predictors/0/graph/children/1/modelUri": "iris demo3",
}
AZURE_PREFIX = "wasbs://artifacts@modelpinci.blob.core.windows.net/"


def seldon_blob(location: str) -> str:
    assert location.startswith(AZURE_PREFIX), location
    return "wasbs://artifacts/" + location[len(AZURE_PREFIX) :]


def kserve_blob(location: str) -> str:
    assert location.startswith(AZURE_PREFIX), location
    return "https://modelpinci.blob.core.windows.net/artifacts/" + location[len(AZURE_PREFIX) :]


def test_seed_seldon_deployment_resolves_all_four_models(modelpin: ModelpinServer, catalog: Catalog) -> None:
    obj = fixture("seldon-seed.yaml")
    review = make_review(obj)
    response = modelpin.review(review)
    assert response["response"]["uid"] == review["request"]["uid"]
    out = apply(obj, response)
    templates = json.loads(out["metadata"]["annotations"]["modelpin.io/templates"])
    resolved = json.loads(out["metadata"]["annotations"]["modelpin.io/resolved"])
    assert out["metadata"]["labels"]["modelpin.io/managed"] == "true"
    assert set(templates) == set(SEED_POINTERS) == set(resolved)
    for pointer, model in SEED_POINTERS.items():
        version = catalog.version_for(model, "champion")
        expected = seldon_blob(catalog.location(model, version))
        assert at(out, pointer) == expected
        assert templates[pointer] == at(obj, pointer)
        record = resolved[pointer]
        assert record["model"] == model and record["version"] == version and record["selector"] == "@champion"
        assert record["uri"] == expected and record["registry"] == "mlflow"
        assert record["run_id"] == catalog.client.get_model_version(model, version).run_id
    assert "{{" not in json.dumps(out["spec"])


def test_reapplying_the_output_gives_no_patch(modelpin: ModelpinServer) -> None:
    obj = fixture("seldon-seed.yaml")
    out = apply(obj, modelpin.review(make_review(obj)))
    again = modelpin.review(make_review(out, operation="UPDATE", old=out))
    assert again["response"]["allowed"] is True
    assert patch_of(again) == []


def test_inference_service_fields_everywhere(modelpin: ModelpinServer, catalog: Catalog) -> None:
    obj = fixture("isvc-canary.yaml")
    out = apply(obj, modelpin.review(make_review(obj)))
    loc = catalog.location
    assert at(out, "/spec/predictor/model/storageUri") == loc("fraud", catalog.version_for("fraud", "champion"))
    assert at(out, "/spec/predictor/storageUris/0/uri") == loc("fraud", "1")  # Production
    assert at(out, "/spec/predictor/storageUris/1/uri") == loc("fraud", "3")  # latest
    assert at(out, "/spec/transformer/containers/0/env/0/value") == loc("fraud", "3")  # Staging
    proxied = loc("proxied", "1")
    assert proxied.startswith("mlflow-artifacts:/")
    assert at(out, "/spec/explainer/art/storageUri") == PROXIED_ROOT + proxied[len("mlflow-artifacts:/") :]
    iris = catalog.version_for("iris demo1", "champion")
    assert at(out, "/spec/canary/0/predictor/model/storageUri") == kserve_blob(loc("iris demo1", iris))
    assert loc("fraud", "1").startswith("s3://mlflow/7/models/m-")  # a models:/m-<id> source


def test_legacy_framework_field_and_modelcar_profile(modelpin: ModelpinServer, catalog: Catalog) -> None:
    obj = fixture("isvc-legacy.yaml")
    out = apply(obj, modelpin.review(make_review(obj)))
    assert at(out, "/spec/predictor/sklearn/storageUri") == catalog.location("fraud", "2")
    commit = catalog.client.get_model_version("jukebox", "1").tags["git_commit"]
    assert at(out, "/spec/transformer/containers/0/env/0/value") == f"oci://quay.io/rhoai/jukebox:{commit}"


def test_trained_model_and_seldon_v2_model(modelpin: ModelpinServer, catalog: Catalog) -> None:
    tm = fixture("trainedmodel.yaml")
    out = apply(tm, modelpin.review(make_review(tm)))
    assert at(out, "/spec/model/storageUri") == catalog.location("fraud", catalog.version_for("fraud", "champion"))
    model = fixture("seldon-model.yaml")
    out = apply(model, modelpin.review(make_review(model)))
    latest = max(catalog.versions["iris demo2"], key=int)
    assert at(out, "/spec/storageUri") == seldon_blob(catalog.location("iris demo2", latest))


def test_namespace_default_selector(modelpin: ModelpinServer, catalog: Catalog) -> None:
    obj = isvc("models:/fraud")
    out = apply(obj, modelpin.review(make_review(obj, namespace="staging")))
    assert at(out, "/spec/predictor/model/storageUri") == catalog.location("fraud", "3")
    record = json.loads(out["metadata"]["annotations"]["modelpin.io/resolved"])
    assert record["/spec/predictor/model/storageUri"]["selector"] == "/Staging"


@pytest.mark.parametrize(
    ("uri", "code", "needles"),
    [
        ('{{ mlflow.s3["no such model@champion"] }}', 404, ["no alias", "no such model"]),
        ('{{ mlflow.s3["fraud/99"] }}', 404, ["no version 99"]),
        ('{{ mlflow.s3["fraud@nope"] }}', 404, ["no alias 'nope'"]),
        ("{{ mlflow.s3['fraud' }}", 422, ["expected ']'", "column 22", "found '}'"]),
        ('{{ mlflow.nosuch["fraud/1"] }}', 422, ["unknown profile 'nosuch'"]),
        ('{{ other.s3["fraud/1"] }}', 422, ["unknown registry 'other'"]),
        ('{{ mlflow.gcs["fraud/1"] }}', 422, ["needs a gs:// location"]),
    ],
)
def test_denials_name_field_template_and_cause(
    modelpin: ModelpinServer, uri: str, code: int, needles: list[str]
) -> None:
    obj = isvc(uri)
    response = modelpin.review(make_review(obj))["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == code
    message = response["status"]["message"]
    assert "/spec/predictor/model/storageUri" in message
    assert repr(uri) in message
    for needle in needles:
        assert needle in message
    assert "patch" not in response


def test_namespace_policy_denies_other_models(modelpin: ModelpinServer) -> None:
    obj = fixture("seldon-seed.yaml")
    response = modelpin.review(make_review(obj, namespace="restricted"))["response"]
    assert response["allowed"] is False and response["status"]["code"] == 403
    assert "may not use model 'iris demo4'" in response["status"]["message"]
    isvc = fixture("isvc-legacy.yaml")
    isvc["spec"].pop("transformer")
    assert modelpin.review(make_review(isvc, namespace="restricted"))["response"]["allowed"] is True


def test_delete_and_connect_pass_without_patch(modelpin: ModelpinServer) -> None:
    obj = fixture("seldon-seed.yaml")
    for op in ("DELETE", "CONNECT"):
        review = make_review(obj, operation=op)
        review["request"]["object"] = None
        response = modelpin.review(review)["response"]
        assert response == {"uid": review["request"]["uid"], "allowed": True}


def test_dry_run_gives_the_same_answer(modelpin: ModelpinServer) -> None:
    obj = fixture("isvc-canary.yaml")
    wet = modelpin.review(make_review(obj))["response"]
    dry = modelpin.review(make_review(obj, dry_run=True))["response"]
    assert patch_of({"response": wet}) == patch_of({"response": dry})


def test_update_semantics_refresh_override_and_pause(modelpin: ModelpinServer, catalog: Catalog) -> None:
    name = "update-semantics"
    v1 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v1)
    obj = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "u", "annotations": {"team": "a"}},
        "spec": {
            "predictor": {"model": {"storageUri": f"models:/{name}@champion"}},
            "transformer": {"model": {"storageUri": "s3://fixed/literal"}},
        },
    }
    first = apply(obj, modelpin.review(make_review(obj)))
    ptr = "/spec/predictor/model/storageUri"
    assert at(first, ptr) == catalog.location(name, v1)

    v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v2)
    # An unrelated update inside the cache TTL keeps the cached resolution...
    changed = copy.deepcopy(first)
    changed["spec"]["predictor"]["minReplicas"] = 2
    assert patch_of(modelpin.review(make_review(changed, "UPDATE", first))) == []
    # ...and the reconciler's refresh token bypasses it.
    touched = copy.deepcopy(first)
    touched["metadata"]["annotations"]["modelpin.io/refresh"] = str(catalog_now_ms())
    refreshed = apply(touched, modelpin.review(make_review(touched, "UPDATE", first, username=RECONCILER)))
    assert at(refreshed, ptr) == catalog.location(name, v2)
    assert json.loads(refreshed["metadata"]["annotations"]["modelpin.io/resolved"])[ptr]["version"] == v2

    # Paused: the alias moves again, a refresh comes, the version stays.
    v3 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v3)
    paused = copy.deepcopy(refreshed)
    paused["metadata"]["annotations"]["modelpin.io/paused"] = "true"
    paused["metadata"]["annotations"]["modelpin.io/refresh"] = str(catalog_now_ms())
    assert patch_of(modelpin.review(make_review(paused, "UPDATE", refreshed, username=RECONCILER))) == []
    # Re-applying the template text from git while paused keeps the recorded version too.
    reapplied = copy.deepcopy(paused)
    reapplied["spec"]["predictor"]["model"]["storageUri"] = f"models:/{name}@champion"
    assert at(apply(reapplied, modelpin.review(make_review(reapplied, "UPDATE", paused))), ptr) == catalog.location(
        name, v2
    )
    # Unpaused: it follows the alias.
    unpaused = copy.deepcopy(paused)
    del unpaused["metadata"]["annotations"]["modelpin.io/paused"]
    moved = apply(unpaused, modelpin.review(make_review(unpaused, "UPDATE", paused)))
    assert at(moved, ptr) == catalog.location(name, v3)

    # A literal the user writes over the field is an override: records dropped, label removed.
    override = copy.deepcopy(moved)
    override["spec"]["predictor"]["model"]["storageUri"] = "s3://hand/picked"
    final = apply(override, modelpin.review(make_review(override, "UPDATE", moved)))
    assert at(final, ptr) == "s3://hand/picked"
    assert "modelpin.io/templates" not in final["metadata"]["annotations"]
    assert "modelpin.io/managed" not in final["metadata"].get("labels", {})
    assert final["metadata"]["annotations"]["team"] == "a"


def catalog_now_ms() -> int:
    import time

    return int(time.time() * 1000)


def test_bad_requests_get_400_and_413(modelpin: ModelpinServer) -> None:
    c = modelpin.client
    r = c.post("/mutate", content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 400 and "Content-Type" in r.json()["error"]
    r = c.post("/mutate", content=b"not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    r = c.post("/mutate", content=b'{"kind": "Pod"}', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "AdmissionReview" in r.json()["error"]
    bad = make_review(fixture("seldon-seed.yaml"))
    del bad["request"]["uid"]
    r = c.post("/mutate", content=orjson.dumps(bad), headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "uid" in r.json()["error"]
    huge = make_review(fixture("seldon-seed.yaml"))
    huge["request"]["object"]["spec"]["padding"] = "x" * (4 * 1024 * 1024)
    r = c.post("/mutate", content=orjson.dumps(huge), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("operation", ["CREATE"]),
        ("operation", {"op": "CREATE"}),
        ("uid", 7),
        ("kind", "InferenceService"),
        ("userInfo", {"username": ["system:masters"]}),
        ("oldObject", "x"),
        ("dryRun", "yes"),
        ("options", []),
        ("requestKind", {"kind": 1}),
    ],
)
def test_a_field_of_the_wrong_type_is_a_400_naming_it(modelpin: ModelpinServer, field: str, value: object) -> None:
    bad = make_review(isvc("models:/fraud@champion"))
    bad["request"][field] = value
    r = modelpin.client.post("/mutate", content=orjson.dumps(bad), headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert f"request.{field}" in r.json()["error"]


def test_a_user_cannot_refresh_and_a_create_cannot_forge_records(modelpin: ModelpinServer) -> None:
    obj = isvc("models:/fraud@champion")
    first = apply(obj, modelpin.review(make_review(obj)))
    # a token written by someone other than the reconciler is set back, with a warning
    touched = copy.deepcopy(first)
    touched["metadata"]["annotations"]["modelpin.io/refresh"] = str(catalog_now_ms())
    answer = modelpin.review(make_review(touched, "UPDATE", first, username="alice"))["response"]
    assert answer["allowed"] is True
    assert "modelpin.io/refresh" not in apply(touched, {"response": answer})["metadata"]["annotations"]
    assert any("modelpin.io/refresh is written only by" in w for w in answer["warnings"])
    # a CREATE carrying its own record of a model the registry does not have is refused
    ptr = "/spec/predictor/model/storageUri"
    forged = isvc("s3://forged/model")
    forged["metadata"]["annotations"] = {
        "modelpin.io/templates": json.dumps({ptr: "models:/no-such-model-anywhere/1"}),
        "modelpin.io/resolved": json.dumps({ptr: {"uri": "s3://forged/model", "version": "1"}}),
    }
    denied = modelpin.review(make_review(forged))["response"]
    assert denied["allowed"] is False and denied["status"]["code"] == 404
    assert "no-such-model-anywhere" in denied["status"]["message"]


def test_the_reconciler_may_change_only_template_fields(modelpin: ModelpinServer) -> None:
    obj = isvc("models:/fraud@champion")
    first = apply(obj, modelpin.review(make_review(obj)))
    changed = copy.deepcopy(first)
    changed["spec"]["predictor"]["minReplicas"] = 5
    answer = modelpin.review(make_review(changed, "UPDATE", first, username=RECONCILER))["response"]
    assert answer["allowed"] is False and answer["status"]["code"] == 403
    assert answer["status"]["message"] == (
        f"{RECONCILER} may change only the template fields of spec; changed: /spec/predictor/minReplicas"
    )


def test_health_ready_and_metrics(modelpin: ModelpinServer) -> None:
    assert modelpin.client.get("/healthz").status_code == 200
    assert modelpin.client.get("/readyz").status_code == 200
    modelpin.review(make_review(fixture("seldon-seed.yaml")))
    text = modelpin.client.get("/metrics").text
    for name in (
        "modelpin_admission_seconds_bucket",
        "modelpin_resolutions_total",
        "modelpin_cache_total",
        "modelpin_registry_request_seconds_bucket",
    ):
        assert name in text
    assert modelpin.metric("modelpin_cache_total", result="hit") > 0


def test_plain_http_is_refused(modelpin: ModelpinServer) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{modelpin.port}/healthz", timeout=3)


CALLS = "modelpin_registry_request_seconds_count"  # one per HTTP request to the registry


def test_hundred_concurrent_cold_reviews_make_one_registry_lookup(modelpin: ModelpinServer, catalog: Catalog) -> None:
    names = ("cold-calibration", "cold-concurrency")
    for name in names:
        version = catalog.new_run_version(name, experiment=catalog.s3_experiment)
        catalog.client.set_registered_model_alias(name, "champion", version)
    # what one uncached resolution of a model of this shape costs (alias, then its location)
    calls = modelpin.metric(CALLS)
    modelpin.review(make_review(isvc(f"models:/{names[0]}@champion")))
    one = modelpin.metric(CALLS) - calls
    assert one >= 1

    obj = isvc(f"models:/{names[1]}@champion")
    lookups, calls = modelpin.metric("modelpin_registry_lookups_total"), modelpin.metric(CALLS)
    answers = concurrent_reviews(modelpin, obj, 100)
    expected = catalog.location(names[1], catalog.version_for(names[1], "champion"))
    for _, answer in answers:
        assert at(apply(obj, answer), "/spec/predictor/model/storageUri") == expected
    assert modelpin.metric("modelpin_registry_lookups_total") - lookups == 1
    assert modelpin.metric(CALLS) - calls == one


def test_paths_with_escaped_keys(modelpin: ModelpinServer, catalog: Catalog) -> None:
    obj = {
        "apiVersion": "serving.kserve.io/v1beta1",
        # a kind added by rule: templates anywhere under spec (the four kinds only on their declared fields)
        "kind": "CustomServing",
        "metadata": {"name": "e"},
        "spec": {"predictor": {"annotations~/odd": {"a/b": "models:/fraud/1"}}},
    }
    out = apply(obj, modelpin.review(make_review(obj)))
    assert out["spec"]["predictor"]["annotations~/odd"]["a/b"] == catalog.location("fraud", "1")
    templates = json.loads(out["metadata"]["annotations"]["modelpin.io/templates"])
    assert list(templates) == ["/spec/predictor/annotations~0~1odd/a~1b"]
    assert re.fullmatch(r"s3://mlflow/7/models/m-[0-9a-f]+/artifacts", catalog.location("fraud", "1"))


# --- holds, history and gates (DESIGN.md section 6a) -------------------------------


def history_of(obj: dict[str, Any], pointer: str) -> list[dict[str, str]]:
    entries: list[dict[str, str]] = json.loads(obj["metadata"]["annotations"]["modelpin.io/history"])[pointer]
    return entries


def refreshed_by_reconciler(modelpin: ModelpinServer, obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The reconciler's touch: a new token, sent as the reconciler; the object touched and the response."""
    touched = copy.deepcopy(obj)
    touched["metadata"]["annotations"]["modelpin.io/refresh"] = str(catalog_now_ms())
    return touched, modelpin.review(make_review(touched, "UPDATE", obj, username=RECONCILER))


def test_a_held_object_keeps_its_version_across_a_registry_move(modelpin: ModelpinServer, catalog: Catalog) -> None:
    name = "held-model"
    v1 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v1)
    ptr = "/spec/predictor/model/storageUri"
    obj = isvc(f"models:/{name}@champion", "held")
    first = apply(obj, modelpin.review(make_review(obj)))
    assert [(e["version"], e["cause"]) for e in history_of(first, ptr)] == [(v1, "created")]
    held = copy.deepcopy(first)
    held["metadata"]["annotations"]["modelpin.io/hold"] = json.dumps(
        {"reason": "incident", "until": None, "since": "2026-01-01T00:00:00Z", "by": "alice", "versions": {}}
    )
    assert patch_of(modelpin.review(make_review(held, "UPDATE", first))) == []

    v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v2)
    assert patch_of(refreshed_by_reconciler(modelpin, held)[1]) == []  # the move does not move it
    reapplied = copy.deepcopy(held)
    reapplied["spec"]["predictor"]["model"]["storageUri"] = f"models:/{name}@champion"
    kept = apply(reapplied, modelpin.review(make_review(reapplied, "UPDATE", held)))
    assert at(kept, ptr) == catalog.location(name, v1)
    assert kept["metadata"]["annotations"] == held["metadata"]["annotations"]

    # a hold naming a version rolls the field to it; released, the field follows the alias again
    v3 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v3)
    pinned = copy.deepcopy(held)
    hold = json.loads(pinned["metadata"]["annotations"]["modelpin.io/hold"])
    pinned["metadata"]["annotations"]["modelpin.io/hold"] = json.dumps(hold | {"versions": {ptr: v2}})
    rolled = apply(pinned, modelpin.review(make_review(pinned, "UPDATE", held)))
    assert at(rolled, ptr) == catalog.location(name, v2)
    record = json.loads(rolled["metadata"]["annotations"]["modelpin.io/resolved"])[ptr]
    assert (record["version"], record["selector"]) == (v2, "@champion")
    assert patch_of(modelpin.review(make_review(rolled, "UPDATE", rolled))) == []
    # the reconciler's touch for v3 keeps the held version; its token then fences the cache on release
    touched, answer = refreshed_by_reconciler(modelpin, rolled)
    assert patch_of(answer) == []
    released = copy.deepcopy(touched)
    del released["metadata"]["annotations"]["modelpin.io/hold"]
    moved = apply(released, modelpin.review(make_review(released, "UPDATE", touched)))
    assert at(moved, ptr) == catalog.location(name, v3)
    assert [(e["version"], e["cause"], e["uri"]) for e in history_of(moved, ptr)] == [
        (v1, "created", catalog.location(name, v1)),
        (v2, "rollback", catalog.location(name, v2)),
        (v3, "released", catalog.location(name, v3)),
    ]
    for entry in history_of(moved, ptr):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["at"]), entry


@pytest.fixture(scope="module")
def gated(
    mlflow_server: MlflowServer, ca_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelpinServer]:
    """modelpin serve whose namespace 'production' admits only versions tagged validation_status=passed."""
    config = modelpin_config(
        mlflow_server.url, namespaces={"production": {"require_tags": {"validation_status": "passed"}}}
    )
    server = ModelpinServer(tmp_path_factory.mktemp("modelpin-gated"), config, ca_dir)
    try:
        yield server
    finally:
        server.stop()


def test_a_gated_version_is_denied_and_a_recorded_one_kept(gated: ModelpinServer, catalog: Catalog) -> None:
    name = "gated-model"
    v1 = catalog.new_run_version(name, experiment=catalog.s3_experiment, tags={"validation_status": "passed"})
    v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_model_version_tag(name, v2, "validation_status", "failed")
    ptr = "/spec/predictor/model/storageUri"
    fresh = isvc(f"models:/{name}/{v2}", "gated")
    refused = gated.review(make_review(fresh, namespace="production"))["response"]
    assert refused["allowed"] is False and refused["status"]["code"] == 403
    assert refused["status"]["message"].endswith(
        f"{ptr}: template 'models:/{name}/{v2}': namespace 'production' requires tag "
        f"validation_status=passed; version {v2} of '{name}' has validation_status='failed'"
    )
    # elsewhere the version runs
    assert gated.review(make_review(fresh, namespace="default"))["response"]["allowed"] is True

    catalog.client.set_registered_model_alias(name, "champion", v1)
    obj = isvc(f"models:/{name}@champion", "gated")
    first = apply(obj, gated.review(make_review(obj, namespace="production")))
    assert at(first, ptr) == catalog.location(name, v1)
    catalog.client.set_registered_model_alias(name, "champion", v2)
    touched = copy.deepcopy(first)
    touched["metadata"]["annotations"]["modelpin.io/refresh"] = str(catalog_now_ms())
    answer = gated.review(make_review(touched, "UPDATE", first, namespace="production", username=RECONCILER))
    kept = apply(touched, answer)
    assert at(kept, ptr) == catalog.location(name, v1)
    assert answer["response"]["warnings"] == [
        f"{ptr}: kept version {v1} of '{name}': namespace 'production' requires tag validation_status=passed; "
        f"version {v2} of '{name}' has validation_status='failed'"
    ]
