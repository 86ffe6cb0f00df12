"""The declared template paths against the upstream CRDs' schemas, field by field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.upstream_crds import ABSENT, UPSTREAM_CRDS
from tests.support.upstream_crds import crd as upstream_crd
from webhook.templating import template_paths
from webhook.templating.template_paths import ITEM, KINDS, Flavor, KindSpec, for_kind


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
def test_declared_paths_are_exactly_the_crds_template_bearing_fields(kind: KindSpec) -> None:
    if not UPSTREAM_CRDS.is_dir():
        pytest.skip(ABSENT)
    crd = upstream_crd(kind.kind)
    assert crd["spec"]["group"] == kind.group and crd["spec"]["names"]["plural"] == kind.plural
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


# --- the catalogue: what else each declaration gives ------------------------------


def test_each_kind_is_declared_once_and_found_by_its_names() -> None:
    assert len({(k.group, k.kind) for k in KINDS}) == len({(k.group, k.plural) for k in KINDS}) == len(KINDS)
    for kind in KINDS:
        assert for_kind(kind.group, kind.kind) is kind
        assert kind.singular == kind.kind.lower()
        assert kind.reconciled == f"{kind.group}/{kind.versions[0]}/{kind.plural}"
    assert for_kind("example.com", "Model") is None


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_the_fetcher_is_the_declared_one_by_kind_or_plural(kind: KindSpec) -> None:
    # admission passes the kind, the reconciler the resource's plural
    for name in (kind.kind, kind.plural, kind.singular):
        assert Flavor.for_group(kind.group, name) is kind.fetcher
        assert Flavor.for_group(kind.group, name) is kind.fetcher  # and again, from the memo


@pytest.mark.parametrize(
    ("group", "kind", "flavor"),
    [
        ("serving.kserve.io", "TrainedModel", Flavor.KSERVE_AGENT),
        ("serving.kserve.io", "InferenceService", Flavor.KSERVE),
        ("machinelearning.seldon.io", "SeldonDeployment", Flavor.SELDON),
        ("mlops.seldon.io", "Model", Flavor.SELDON),
        # kinds a user's rule adds: a declared vendor's are fetched as its first declared kind is
        ("serving.kserve.io", "", Flavor.KSERVE),
        ("serving.kserve.io", "InferenceGraph", Flavor.KSERVE),
        ("machinelearning.seldon.io", "", Flavor.SELDON),
        ("mlops.seldon.io", "Pipeline", Flavor.SELDON),
        ("example.com", "TrainedModel", Flavor.GENERIC),
        ("apps", "Deployment", Flavor.GENERIC),
        ("", "", Flavor.GENERIC),
    ],
)
def test_flavor_for_group_and_kind(group: str, kind: str, flavor: Flavor) -> None:
    assert Flavor.for_group(group, kind) is flavor
