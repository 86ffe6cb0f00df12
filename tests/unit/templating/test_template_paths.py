"""The declared template paths against the upstream CRDs' schemas, field by field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.templating import template_paths
from webhook.templating.template_paths import ITEM, KINDS, KindPaths

UPSTREAM = Path(__file__).resolve().parents[3].parent / "shared" / "crds-upstream"
FILES = {
    "SeldonDeployment": "machinelearning.seldon.io_seldondeployments.yaml",
    "Model": "mlops.seldon.io_models.yaml",
    "InferenceService": "serving.kserve.io_inferenceservices.yaml",
    "TrainedModel": "serving.kserve.io_trainedmodels.yaml",
}


def string_fields(schema: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every string leaf of a structural schema, ITEM for list items."""
    assert not schema.get("x-kubernetes-preserve-unknown-fields"), f"open schema at {path}: no list can be complete"
    for name, child in schema.get("properties", {}).items():
        yield from string_fields(child, (*path, name))
    if schema.get("type") == "array":
        yield from string_fields(schema["items"], (*path, ITEM))
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict) and additional.get("type") != "string":
        yield from string_fields(additional, (*path, "*"))
    if schema.get("type") == "string":
        yield path


def template_bearing(path: tuple[str, ...]) -> bool:
    """Where a model location, a URI or an env value is written."""
    return (
        path[-1] in ("storageUri", "modelUri")
        or path[-3:] == ("storageUris", ITEM, "uri")
        or path[-3:] == ("env", ITEM, "value")
    )


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_declared_paths_are_exactly_the_crds_template_bearing_fields(kind: KindPaths) -> None:
    if not UPSTREAM.is_dir():
        pytest.skip(f"{UPSTREAM} is absent (CI always has it: .ci/run fails without it)")
    crd = yaml.load((UPSTREAM / FILES[kind.kind]).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["group"] == kind.group and crd["spec"]["names"]["plural"] == kind.resource
    assert {v["name"] for v in crd["spec"]["versions"] if v.get("served")} == set(kind.versions)
    declared = {p.tokens for p in kind.paths}
    assert len(declared) == len(kind.paths), "a path is declared twice"
    for version in crd["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        found = {p for p in string_fields(spec) if template_bearing(p)}
        assert found == declared, (version["name"], sorted(found ^ declared))


def test_the_seldon_graph_is_declared_to_the_crds_depth() -> None:
    deepest = max(len(p.tokens) for p in template_paths.SELDON_DEPLOYMENT.paths if p.tokens[-1] == "modelUri")
    # predictors [] graph, then children [] per level, then modelUri
    assert deepest == 3 + 2 * template_paths.SELDON_GRAPH_DEPTH + 1


def test_dotted_names() -> None:
    assert template_paths.INFERENCE_SERVICE.paths[0].dotted() == "spec.predictor.huggingface.storageUri"
    env = template_paths._env(f"canary.{ITEM}.predictor.model")
    assert env.dotted() == "spec.canary[].predictor.model.env[].value" and env.env
    assert not template_paths.TRAINED_MODEL.paths[0].env
