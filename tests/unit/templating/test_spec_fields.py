from __future__ import annotations

from typing import Any

import jsonpatch

from webhook.templating.spec_fields import escape, interesting_strings


def find_candidates(obj: dict[str, Any]) -> dict[str, str]:
    """Pointer to text of every candidate under ``spec``, declared or not."""
    return {pointer: value for pointer, value, _ in interesting_strings(obj, set())}


def test_escape_order_is_tilde_first() -> None:
    assert escape("a/b") == "a~1b"
    assert escape("a~b") == "a~0b"
    # '~1' literally in a key must not turn into '/' when read back
    assert escape("~1") == "~01"
    assert escape("modelpin.io/x~") == "modelpin.io~1x~0"


def test_pointers_with_escaping_resolve_to_the_value() -> None:
    obj = {"spec": {"a/b": {"c~d": "models:/m/1"}, "~1": "models:/n/2"}}
    found = find_candidates(obj)
    assert found == {"/spec/a~1b/c~0d": "models:/m/1", "/spec/~01": "models:/n/2"}
    for pointer, value in found.items():
        assert jsonpatch.JsonPointer(pointer).resolve(obj) == value


def test_nested_seldon_children_to_depth_four() -> None:
    leaf: dict[str, Any] = {"name": "d4", "modelUri": "{{ mlflow.blob['m4'] }}", "children": []}
    for depth in (3, 2, 1):
        leaf = {"name": f"d{depth}", "modelUri": f"{{{{ mlflow.blob['m{depth}'] }}}}", "children": [leaf]}
    obj = {"spec": {"predictors": [{"graph": leaf, "name": "default"}]}}
    found = find_candidates(obj)
    assert found == {
        "/spec/predictors/0/graph/modelUri": "{{ mlflow.blob['m1'] }}",
        "/spec/predictors/0/graph/children/0/modelUri": "{{ mlflow.blob['m2'] }}",
        "/spec/predictors/0/graph/children/0/children/0/modelUri": "{{ mlflow.blob['m3'] }}",
        "/spec/predictors/0/graph/children/0/children/0/children/0/modelUri": "{{ mlflow.blob['m4'] }}",
    }


def test_lists_and_env_values() -> None:
    obj = {
        "spec": {
            "predictor": {
                "model": {"storageUris": [{"uri": "s3://x"}, {"uri": "models:/fraud/latest", "mountPath": "/m"}]},
            },
            "transformer": {
                "containers": [
                    {
                        "name": "t",
                        "env": [
                            {"name": "OTHER", "value": "plain"},
                            {"name": "STORAGE_URI", "value": "{{ mlflow.s3['fraud/Staging'] }}"},
                        ],
                    }
                ]
            },
            "tags": ["models:/a/1", 3, None, True, "b"],
        }
    }
    assert find_candidates(obj) == {
        "/spec/predictor/model/storageUris/1/uri": "models:/fraud/latest",
        "/spec/transformer/containers/0/env/1/value": "{{ mlflow.s3['fraud/Staging'] }}",
        "/spec/tags/0": "models:/a/1",
    }


def test_only_spec_is_searched() -> None:
    obj = {
        "metadata": {"annotations": {"x": "models:/m/1"}, "name": "{{ not.this['m'] }}"},
        "status": {"url": "models:/m/1"},
        "data": {"k": "models:/m/1"},
        "spec": {"x": "plain"},
    }
    assert find_candidates(obj) == {}
    assert find_candidates({"metadata": {}}) == {}


def test_interesting_strings_says_which_fields_are_declared() -> None:
    from webhook.templating.spec_fields import interesting_strings
    from webhook.templating.template_paths import SELDON_DEPLOYMENT

    node: dict[str, object] = {"name": "n10", "modelUri": "models:/deepest/1"}
    for level in range(9, -1, -1):
        node = {"name": f"n{level}", "children": [node]}
    too_deep = node
    for _ in range(1):
        too_deep = {"name": "top", "children": [too_deep]}
    obj = {
        "spec": {
            "predictors": [
                {"graph": node, "explainer": {"modelUri": "\u00a0models:/e/1"}, "args": ["{{ x"]},
                {"graph": too_deep},
            ]
        }
    }
    found = {p: declared for p, _, declared in interesting_strings(obj, set(), SELDON_DEPLOYMENT.trie)}
    chain = "/children/0" * 10
    assert found == {
        f"/spec/predictors/0/graph{chain}/modelUri": True,  # the CRD's deepest node
        "/spec/predictors/0/explainer/modelUri": True,
        "/spec/predictors/0/args/0": False,
        f"/spec/predictors/1/graph{chain}/children/0/modelUri": False,  # one level past the CRD
    }
    # without declared paths (a kind added by rule) every field is one
    assert all(d for _, _, d in interesting_strings(obj, set(), None))


def test_interesting_strings_walks_any_depth_without_recursion() -> None:
    from webhook.templating.spec_fields import interesting_strings

    deep: dict[str, object] = {"v": "models:/m/1"}
    for _ in range(50_000):
        deep = {"a": [deep]}
    ((pointer, value, declared),) = interesting_strings({"spec": deep}, set())
    assert pointer.count("/a/0") == 50_000 and value == "models:/m/1" and declared
