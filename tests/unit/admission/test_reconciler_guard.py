from __future__ import annotations

from webhook.admission.reconciler_guard import changes_outside_templates
from webhook.templating.template_paths import for_kind

ISVC = for_kind("serving.kserve.io", "InferenceService")


def _isvc(uri: str, image: str = "kserve/sklearn:1", env: str = "models:/iris@champion") -> dict[str, object]:
    return {
        "spec": {
            "predictor": {
                "sklearn": {"storageUri": uri},
                "containers": [{"name": "c", "image": image, "env": [{"name": "STORAGE_URI", "value": env}]}],
            }
        }
    }


def test_a_touch_changes_only_template_fields() -> None:
    old = _isvc("s3://b/1")
    new = _isvc("s3://b/2", env="s3://b/2")
    assert changes_outside_templates(old, new, ISVC) == []


def test_an_image_change_with_the_token_is_named() -> None:
    old = _isvc("s3://b/1")
    new = _isvc("s3://b/2", image="evil/image:latest")
    assert changes_outside_templates(old, new, ISVC) == ["/spec/predictor/containers/0/image"]


def test_added_keys_and_list_lengths_count() -> None:
    old = _isvc("s3://b/1")
    new = _isvc("s3://b/1")
    new["spec"]["predictor"]["containers"].append({"name": "x", "image": "y"})  # type: ignore[index]
    new["spec"]["predictor"]["minReplicas"] = 0  # type: ignore[index]
    assert sorted(changes_outside_templates(old, new, ISVC)) == [
        "/spec/predictor/containers",
        "/spec/predictor/minReplicas",
    ]


def test_a_kind_added_by_rule_may_change_strings_only() -> None:
    old = {"spec": {"uri": "a", "replicas": 1}}
    assert changes_outside_templates(old, {"spec": {"uri": "b", "replicas": 1}}, None) == []
    assert changes_outside_templates(old, {"spec": {"uri": "b", "replicas": 2}}, None) == ["/spec/replicas"]
