from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from webhook.admission.patch import annotations_size, build_patch
from webhook.templating import record_annotations as records

TEMPLATE = "{{ mlflow.s3['fraud@champion'] }}"
URI = "s3://mlflow/7/r2/artifacts/model"
ENTRY = {"registry": "mlflow", "model": "fraud", "selector": "@champion", "version": "2", "run_id": "r2", "uri": URI}


def obj(metadata: dict[str, Any] | None = None, value: str = TEMPLATE) -> dict[str, Any]:
    o: dict[str, Any] = {"apiVersion": "v1", "kind": "X", "spec": {"model": {"storageUri": value}}}
    if metadata is not None:
        o["metadata"] = metadata
    return o


def apply(o: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(o), ops)
    return result


def expected_annotations() -> dict[str, str]:
    return {
        records.TEMPLATES: records.dumps({"/spec/model/storageUri": TEMPLATE}),
        records.RESOLVED: records.dumps({"/spec/model/storageUri": ENTRY}),
    }


def patch_for(o: dict[str, Any]) -> list[dict[str, Any]]:
    return build_patch(
        o, {"/spec/model/storageUri": URI}, {"/spec/model/storageUri": TEMPLATE}, {"/spec/model/storageUri": ENTRY}
    )


def test_fresh_object_without_labels_or_annotations() -> None:
    o = obj({"name": "x"})
    ops = patch_for(o)
    assert ops == [
        {"op": "replace", "path": "/spec/model/storageUri", "value": URI},
        {"op": "add", "path": "/metadata/labels", "value": {"modelpin.io/managed": "true"}},
        {"op": "add", "path": "/metadata/annotations", "value": expected_annotations()},
    ]
    out = apply(o, ops)
    assert out["spec"]["model"]["storageUri"] == URI
    assert out["metadata"] == {
        "name": "x",
        "labels": {"modelpin.io/managed": "true"},
        "annotations": expected_annotations(),
    }


def test_existing_maps_get_per_key_adds_with_escaped_keys() -> None:
    o = obj({"labels": {"app": "a"}, "annotations": {"note": "n"}})
    ops = patch_for(o)
    assert {"op": "add", "path": "/metadata/labels/modelpin.io~1managed", "value": "true"} in ops
    assert {
        "op": "add",
        "path": "/metadata/annotations/modelpin.io~1templates",
        "value": expected_annotations()[records.TEMPLATES],
    } in ops
    out = apply(o, ops)
    assert out["metadata"]["labels"] == {"app": "a", "modelpin.io/managed": "true"}
    assert out["metadata"]["annotations"] == {"note": "n", **expected_annotations()}


def test_changed_keys_are_replaced() -> None:
    o = obj(
        {
            "labels": {"modelpin.io/managed": "false"},
            "annotations": {
                records.TEMPLATES: "{}",
                records.RESOLVED: records.dumps({"/spec/model/storageUri": ENTRY}),
            },
        },
        value="s3://old",
    )
    ops = patch_for(o)
    assert ops == [
        {"op": "replace", "path": "/spec/model/storageUri", "value": URI},
        {"op": "replace", "path": "/metadata/labels/modelpin.io~1managed", "value": "true"},
        {
            "op": "replace",
            "path": "/metadata/annotations/modelpin.io~1templates",
            "value": expected_annotations()[records.TEMPLATES],
        },
    ]
    assert apply(o, ops)["metadata"]["annotations"] == expected_annotations()


def test_no_ops_when_nothing_changed() -> None:
    o = obj({"labels": {"modelpin.io/managed": "true"}, "annotations": expected_annotations()}, value=URI)
    assert patch_for(o) == []


def test_no_ops_for_an_unmanaged_object_without_templates() -> None:
    assert build_patch(obj({"name": "x"}, value="s3://literal"), {}, {}, {}) == []
    assert build_patch(obj(None, value="s3://literal"), {}, {}, {}) == []


def test_records_and_label_removed_when_no_template_remains() -> None:
    o = obj(
        {
            "labels": {"modelpin.io/managed": "true", "app": "a"},
            "annotations": {**expected_annotations(), "note": "n"},
        },
        value="s3://user-override",
    )
    ops = build_patch(o, {}, {}, {})
    assert ops == [
        {"op": "remove", "path": "/metadata/labels/modelpin.io~1managed"},
        {"op": "remove", "path": "/metadata/annotations/modelpin.io~1templates"},
        {"op": "remove", "path": "/metadata/annotations/modelpin.io~1resolved"},
    ]
    out = apply(o, ops)
    assert out["metadata"] == {"labels": {"app": "a"}, "annotations": {"note": "n"}}
    assert out["spec"]["model"]["storageUri"] == "s3://user-override"


def test_missing_metadata_is_created_first() -> None:
    o = obj(None)
    ops = patch_for(o)
    assert ops[0] == {"op": "add", "path": "/metadata", "value": {}}
    out = apply(o, ops)
    assert out["metadata"]["labels"] == {"modelpin.io/managed": "true"}
    assert out["metadata"]["annotations"] == expected_annotations()


def test_values_inside_lists_and_escaped_keys() -> None:
    o = {"metadata": {}, "spec": {"a/b": [{"uri": "models:/m/1"}, {"uri": "models:/m/2"}]}}
    values = {"/spec/a~1b/1/uri": "s3://two", "/spec/a~1b/0/uri": "models:/m/1"}
    ops = build_patch(o, values, {"/spec/a~1b/1/uri": "models:/m/2"}, {"/spec/a~1b/1/uri": {"uri": "s3://two"}})
    # the unchanged value gets no op
    assert [op for op in ops if op["path"].startswith("/spec")] == [
        {"op": "replace", "path": "/spec/a~1b/1/uri", "value": "s3://two"}
    ]
    assert apply(o, ops)["spec"] == {"a/b": [{"uri": "models:/m/1"}, {"uri": "s3://two"}]}


@pytest.mark.parametrize("value", [TEMPLATE, URI, "s3://else"])
def test_every_patch_applies(value: str) -> None:
    for metadata in (None, {}, {"labels": None}, {"labels": {"x": "y"}, "annotations": {records.TEMPLATES: "{}"}}):
        o = obj(copy.deepcopy(metadata), value=value)
        out = apply(o, patch_for(o))
        assert out["spec"]["model"]["storageUri"] == URI
        assert out["metadata"]["annotations"][records.RESOLVED] == expected_annotations()[records.RESOLVED]
        # applying a fresh patch to the output changes nothing
        assert patch_for(out) == []


def test_a_whole_spec_replaces_the_keys_that_differ_and_leaves_their_fields_to_it() -> None:
    sent = {
        "apiVersion": "v1",
        "kind": "X",
        "spec": {"predictor": {"storageUri": TEMPLATE}, "canary": [{"trafficPercent": 5}], "transformer": {"a": 1}},
    }
    wanted = {"predictor": {"storageUri": URI}, "transformer": {"a": 1}, "explainer": {"b": 2}}
    ops = build_patch(
        sent, {"/spec/predictor/storageUri": URI}, {"/spec/predictor/storageUri": TEMPLATE}, {}, spec=wanted
    )
    spec_ops = [op for op in ops if op["path"].startswith("/spec")]
    assert sorted(op["path"] for op in spec_ops) == ["/spec/canary", "/spec/explainer", "/spec/predictor"]
    assert apply(sent, ops)["spec"] == wanted


def test_a_whole_spec_equal_to_the_sent_one_adds_no_spec_op() -> None:
    sent = obj({"labels": {records.MANAGED: "true"}}, URI)
    ops = build_patch(sent, {"/spec/model/storageUri": URI}, {}, {}, spec=copy.deepcopy(sent["spec"]))
    assert not [op for op in ops if op["path"].startswith("/spec")]


def test_values_that_are_not_strings_count_as_empty() -> None:
    # the apiserver stores only strings; another value fails its own validation, whatever its size
    notes: dict[str, Any] = {"a": 12345, "b": None}
    assert annotations_size(notes) == 2
