from __future__ import annotations

from typing import Any

import pytest

from webhook.templating.flavors import MEMO_MAX_CHARS, NEEDED_FLAVOR, PYFUNC, Need, needed_flavor

KSERVE = "serving.kserve.io"
SELDON_V1 = "machinelearning.seldon.io"
SELDON_V2 = "mlops.seldon.io"


def isvc(predictor: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{KSERVE}/v1beta1", "kind": "InferenceService", "spec": {"predictor": predictor, **spec}}


@pytest.mark.parametrize(
    ("format_name", "flavor"),
    [
        ("sklearn", "sklearn"),
        ("xgboost", "xgboost"),
        ("lightgbm", "lightgbm"),
        ("tensorflow", "tensorflow"),
        ("pytorch", "pytorch"),
        ("onnx", "onnx"),
        ("mlflow", PYFUNC),
        ("huggingface", "transformers"),
        ("SKLearn", "sklearn"),
    ],
)
def test_kserve_model_format(format_name: str, flavor: str) -> None:
    obj = isvc({"model": {"modelFormat": {"name": format_name}, "storageUri": "models:/iris@champion"}})
    assert needed_flavor(KSERVE, "InferenceService", obj, "/spec/predictor/model/storageUri") == Need(
        flavor, format_name, "/spec/predictor/model/modelFormat/name"
    )


def test_kserve_storage_uris_entry_takes_the_predictor_format() -> None:
    obj = isvc({"model": {"modelFormat": {"name": "xgboost"}, "storageUris": [{"uri": "models:/a@b"}]}})
    found = needed_flavor(KSERVE, "InferenceService", obj, "/spec/predictor/model/storageUris/0/uri")
    assert found is not None and found.flavor == "xgboost"


def test_kserve_legacy_framework_key() -> None:
    obj = isvc({"sklearn": {"storageUri": "models:/iris@champion"}})
    assert needed_flavor(KSERVE, "InferenceService", obj, "/spec/predictor/sklearn/storageUri") == Need(
        "sklearn", "sklearn", "/spec/predictor/sklearn"
    )


def test_kserve_canary_predictor_has_its_own_format() -> None:
    obj = isvc(
        {"model": {"modelFormat": {"name": "sklearn"}}},
        canary=[{"trafficPercent": 10, "predictor": {"model": {"modelFormat": {"name": "mlflow"}}}}],
    )
    found = needed_flavor(KSERVE, "InferenceService", obj, "/spec/canary/0/predictor/model/storageUri")
    assert found == Need(PYFUNC, "mlflow", "/spec/canary/0/predictor/model/modelFormat/name")


@pytest.mark.parametrize(
    "pointer",
    [
        "/spec/transformer/containers/0/env/0/value",
        "/spec/explainer/storageUri",
        "/spec/predictor/containers/0/env/0/value",  # a custom container
        "/spec/predictor/triton/storageUri",  # a server with no MLflow flavor
        "/metadata/annotations/x",
        "spec",
    ],
)
def test_kserve_unknown(pointer: str) -> None:
    obj = isvc({"model": {"modelFormat": {"name": "sklearn"}}, "triton": {}})
    assert needed_flavor(KSERVE, "InferenceService", obj, pointer) is None


def test_kserve_model_without_format_or_unknown_format() -> None:
    assert needed_flavor(KSERVE, "InferenceService", isvc({"model": {}}), "/spec/predictor/model/storageUri") is None
    obj = isvc({"model": {"modelFormat": {"name": "pmml"}}})
    assert needed_flavor(KSERVE, "InferenceService", obj, "/spec/predictor/model/storageUri") is None


def test_trained_model_framework() -> None:
    obj = {"spec": {"inferenceService": "s", "model": {"framework": "lightgbm", "storageUri": "models:/a@b"}}}
    assert needed_flavor(KSERVE, "TrainedModel", obj, "/spec/model/storageUri") == Need(
        "lightgbm", "lightgbm", "/spec/model/framework"
    )


def seldon(graph: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"predictors": [{"name": "p", "graph": graph}]}}


def test_seldon_v1_node_implementation() -> None:
    obj = seldon({"name": "a", "implementation": "SKLEARN_SERVER", "modelUri": "models:/a@b"})
    assert needed_flavor(SELDON_V1, "SeldonDeployment", obj, "/spec/predictors/0/graph/modelUri") == Need(
        "sklearn", "SKLEARN_SERVER", "/spec/predictors/0/graph/implementation"
    )


def test_seldon_v1_child_node_is_judged_by_its_own_implementation() -> None:
    obj = seldon(
        {
            "name": "a",
            "implementation": "SKLEARN_SERVER",
            "children": [{"name": "b", "implementation": "MLFLOW_SERVER", "modelUri": "m"}, {"name": "c"}],
        }
    )
    child = needed_flavor(SELDON_V1, "SeldonDeployment", obj, "/spec/predictors/0/graph/children/0/modelUri")
    assert child is not None and child.flavor == PYFUNC
    # a node with no implementation (a custom container) is not given its parent's server
    assert needed_flavor(SELDON_V1, "SeldonDeployment", obj, "/spec/predictors/0/graph/children/1/modelUri") is None


def test_seldon_v1_unknown_and_non_graph_fields() -> None:
    obj = seldon({"name": "a", "implementation": "TRITON_SERVER", "modelUri": "m"})
    assert needed_flavor(SELDON_V1, "SeldonDeployment", obj, "/spec/predictors/0/graph/modelUri") is None
    pointer = "/spec/predictors/0/componentSpecs/0/spec/containers/0/env/0/value"
    assert needed_flavor(SELDON_V1, "SeldonDeployment", obj, pointer) is None


def test_seldon_v2_requirements() -> None:
    obj = {"spec": {"storageUri": "models:/a@b", "requirements": ["gpu", "mlflow"]}}
    assert needed_flavor(SELDON_V2, "Model", obj, "/spec/storageUri") == Need(PYFUNC, "mlflow", "/spec/requirements/1")
    assert needed_flavor(SELDON_V2, "Model", {"spec": {"storageUri": "x"}}, "/spec/storageUri") is None


def test_other_kinds_are_unknown() -> None:
    assert needed_flavor("example.com", "Thing", {"spec": {"implementation": "SKLEARN_SERVER"}}, "/spec/uri") is None


def test_table_values_are_mlflow_flavor_names() -> None:
    # flavor keys as MLflow writes them in MLmodel
    known = {"sklearn", "xgboost", "lightgbm", "tensorflow", "pytorch", "onnx", "paddle", PYFUNC, "transformers"}
    for table in NEEDED_FLAVOR.values():
        assert set(table.values()) <= known
        assert all(key == key.lower() for key in table)


def test_the_same_pointer_is_answered_from_each_object_s_own_spec() -> None:
    # what the pointer alone decides is remembered; the server's name is read from each object
    pointer = "/spec/predictor/model/storageUri"
    for name, flavor in [("sklearn", "sklearn"), ("xgboost", "xgboost"), ("sklearn", "sklearn"), ("triton", None)]:
        found = needed_flavor(KSERVE, "InferenceService", isvc({"model": {"modelFormat": {"name": name}}}), pointer)
        assert (found.flavor if found else None) == flavor
    assert needed_flavor(KSERVE, "InferenceService", {"spec": "not an object"}, pointer) is None


def test_a_pointer_too_long_to_remember_is_still_answered() -> None:
    key = "k" * (MEMO_MAX_CHARS + 1)
    obj = {"spec": {"predictors": [{"graph": {key: {"implementation": "SKLEARN_SERVER"}}}]}}
    found = needed_flavor(SELDON_V1, "SeldonDeployment", obj, f"/spec/predictors/0/graph/{key}/modelUri")
    assert found is not None and found.flavor == "sklearn"
    assert found.where == f"/spec/predictors/0/graph/{key}/implementation"
