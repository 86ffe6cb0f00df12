"""Where templates may stand: per kind, every field of the upstream CRDs that holds a model
location, a URI or an env value (DESIGN.md section 2).

This list is the one source for three things that must agree:

- the webhook resolves a template only on these paths, and refuses one anywhere else
  under ``spec`` of these kinds, naming the field (no user may rely on a path the
  guard cannot protect);
- the MutatingWebhookConfiguration's matchConditions send an object to the webhook
  when one of these paths holds a template;
- the guard (a ValidatingAdmissionPolicy) refuses an object when one of these paths
  holds a template, for when the webhook did not answer.

The last two are generated from this module (``python -m webhook.tools.admission_cel``);
tests/unit/tools/test_admission_cel.py fails when the committed manifests drift from it,
and tests/unit/templating/test_template_paths.py compares the list with the upstream CRDs'
schemas (``../shared/crds-upstream``): every string field named ``storageUri`` or
``modelUri``, ``storageUris[].uri`` and ``env[].value``, at every depth the schema allows.

Kinds not listed here (added by a rule of the user's) have no guard and no matchCondition
path: the webhook resolves a template anywhere under their ``spec``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

ITEM: Final = "[]"  # a path token standing for every item of a list

# The operator chart's SeldonDeployment CRD nests graph ``children`` ten levels
# below the graph's root; the schema stops there (deeper nodes are pruned).
SELDON_GRAPH_DEPTH: Final = 10


@dataclass(frozen=True, slots=True)
class FieldPath:
    tokens: tuple[str, ...]  # below ``spec``; ITEM for each list item

    @property
    def env(self) -> bool:
        """An env value: a template only as a whole value (other text may hold ``{{``)."""
        return self.tokens[-3:] == ("env", ITEM, "value")

    def dotted(self) -> str:
        return "spec." + ".".join(self.tokens).replace("." + ITEM, ITEM)


@dataclass(frozen=True, slots=True)
class KindPaths:
    group: str
    kind: str
    resource: str
    versions: tuple[str, ...]
    paths: tuple[FieldPath, ...]
    trie: dict[str, object] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "trie", build_trie(p.tokens for p in self.paths))


LEAF: Final = ""  # the trie key marking a template-bearing field (no CRD field is named "")


def build_trie(paths: Iterable[tuple[str, ...]]) -> dict[str, object]:
    """Nested dicts by token; ``LEAF`` marks where a path ends."""
    root: dict[str, object] = {}
    for tokens in paths:
        node = root
        for token in tokens:
            node = node.setdefault(token, {})  # type: ignore[assignment]
        node[LEAF] = True
    return root


def _p(*tokens: str) -> FieldPath:
    return FieldPath(tuple(t for part in tokens for t in part.split(".")))


def _env(prefix: str) -> FieldPath:
    return _p(prefix, "env", ITEM, "value")


def _containers(prefix: str, lists: tuple[str, ...]) -> list[FieldPath]:
    return [_env(f"{prefix}.{name}.{ITEM}") for name in lists]


# KServe 0.20+ InferenceService: the framework fields of a predictor (each a
# container with storageUri and env), and what each component holds.
KSERVE_FRAMEWORKS: Final = (
    "huggingface",
    "lightgbm",
    "model",
    "onnx",
    "paddle",
    "pmml",
    "pytorch",
    "sklearn",
    "tensorflow",
    "triton",
    "xgboost",
)


def _kserve_predictor(prefix: str, ephemeral: bool) -> list[FieldPath]:
    paths: list[FieldPath] = []
    for framework in KSERVE_FRAMEWORKS:
        paths += [_p(prefix, framework, "storageUri"), _env(f"{prefix}.{framework}")]
    paths += _containers(prefix, ("containers", "initContainers") + (("ephemeralContainers",) if ephemeral else ()))
    paths.append(_p(prefix, "storageUris", ITEM, "uri"))
    paths += _containers(f"{prefix}.workerSpec", ("containers", "ephemeralContainers", "initContainers"))
    return paths


def _kserve_component(prefix: str) -> list[FieldPath]:
    return [*_containers(prefix, ("containers", "initContainers")), _p(prefix, "storageUris", ITEM, "uri")]


INFERENCE_SERVICE: Final = KindPaths(
    group="serving.kserve.io",
    kind="InferenceService",
    resource="inferenceservices",
    versions=("v1beta1",),
    paths=(
        *_kserve_predictor("predictor", ephemeral=False),
        # the upstream schema gives a canary's predictor ephemeralContainers, the main one not
        *_kserve_predictor(f"canary.{ITEM}.predictor", ephemeral=True),
        *_kserve_component("transformer"),
        _p("explainer.art.storageUri"),
        _env("explainer.art"),
        *_kserve_component("explainer"),
    ),
)

TRAINED_MODEL: Final = KindPaths(
    group="serving.kserve.io",
    kind="TrainedModel",
    resource="trainedmodels",
    versions=("v1alpha1",),
    paths=(_p("model.storageUri"),),
)

SELDON_MODEL: Final = KindPaths(
    group="mlops.seldon.io",
    kind="Model",
    resource="models",
    versions=("v1alpha1",),
    paths=(_p("storageUri"),),
)

_PREDICTORS = f"predictors.{ITEM}"
SELDON_DEPLOYMENT: Final = KindPaths(
    group="machinelearning.seldon.io",
    kind="SeldonDeployment",
    resource="seldondeployments",
    versions=("v1", "v1alpha2", "v1alpha3"),
    paths=(
        *(
            _p(_PREDICTORS, "graph", *[f"children.{ITEM}"] * depth, "modelUri")
            for depth in range(SELDON_GRAPH_DEPTH + 1)
        ),
        _p(_PREDICTORS, "explainer.modelUri"),
        _env(f"{_PREDICTORS}.explainer.containerSpec"),
        *_containers(
            f"{_PREDICTORS}.componentSpecs.{ITEM}.spec", ("containers", "ephemeralContainers", "initContainers")
        ),
        _env(f"{_PREDICTORS}.svcOrchSpec"),
    ),
)

KINDS: Final = (SELDON_DEPLOYMENT, SELDON_MODEL, INFERENCE_SERVICE, TRAINED_MODEL)
_BY_GROUP_KIND: Final = {(k.group, k.kind): k for k in KINDS}


def for_kind(group: str, kind: str) -> KindPaths | None:
    """The declared paths of a kind, or None for a kind added by the user's own rule."""
    return _BY_GROUP_KIND.get((group, kind))
