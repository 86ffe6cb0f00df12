"""The kind catalogue: each kind modelpin knows, declared once (``KINDS``) with its API names,
the program that fetches its model (``Flavor``), and where templates may stand: every field of
the upstream CRDs that holds a model location, a URI or an env value (DESIGN.md section 2).

The reconciler's default kinds (``webhook.config``), the fetcher a URI is written for
(``Flavor.for_group``), the operator commands' kind names (``webhook.ops.kinds``) and the
admission CEL all read this list; adding a kind is one ``KindSpec`` here. The paths are the one
source for three things that must agree:

- the webhook resolves a template only on these paths, and refuses one anywhere else
  under ``spec`` of these kinds, naming the field (no user may rely on a path the
  guard cannot protect);
- the MutatingWebhookConfiguration's matchConditions send an object to the webhook
  when one of these paths holds a template;
- the guard (a ValidatingAdmissionPolicy) refuses an object when one of these paths
  holds a template, for when the webhook did not answer.

The last two are generated from this module (``python -m webhook.generators.admission_cel``);
tests/unit/generators/test_admission_cel.py fails when the committed manifests drift from it,
and tests/unit/templating/test_template_paths.py compares the list with the upstream CRDs'
schemas (``../shared/crds-upstream``): every string field named ``storageUri`` or
``modelUri``, ``storageUris[].uri`` and ``env[].value``, at every depth the schema allows.

Kinds not listed here (added by a rule of the user's) have no guard and no matchCondition
path: the webhook resolves a template anywhere under their ``spec``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
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


class Flavor(StrEnum):
    """Which program fetches the URI, and so which forms it may take (``webhook.templating.uris``)."""

    KSERVE = "kserve"  # KServe's storage initializer
    KSERVE_AGENT = "kserve-agent"  # KServe's model agent: TrainedModel
    SELDON = "seldon"  # rclone
    GENERIC = "generic"

    @classmethod
    def for_group(cls, group: str, kind: str = "") -> Flavor:
        """``kind`` is the kind or the resource's plural (admission has one, the reconciler the other)."""
        key = (group, kind)
        # Looked up on every review; enum member access is slow enough to show.
        found = _FLAVORS.get(key)
        if found is None:
            found = _flavor_of(group, kind)
            if len(_FLAVORS) < 256:
                _FLAVORS[key] = found
        return found


@dataclass(frozen=True, slots=True)
class KindSpec:
    group: str
    kind: str
    plural: str
    versions: tuple[str, ...]  # served; the first is the one the reconciler and the CLI use
    fetcher: Flavor
    short_names: tuple[str, ...]  # kubectl's
    paths: tuple[FieldPath, ...]
    trie: dict[str, object] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "trie", build_trie(p.tokens for p in self.paths))

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def reconciled(self) -> str:
        """``group/version/plural``, as ``reconciler.kinds`` names a kind."""
        return f"{self.group}/{self.versions[0]}/{self.plural}"


KindPaths = KindSpec  # the name the admission modules import


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


INFERENCE_SERVICE: Final = KindSpec(
    group="serving.kserve.io",
    kind="InferenceService",
    plural="inferenceservices",
    versions=("v1beta1",),
    fetcher=Flavor.KSERVE,
    short_names=("isvc",),
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

TRAINED_MODEL: Final = KindSpec(
    group="serving.kserve.io",
    kind="TrainedModel",
    plural="trainedmodels",
    versions=("v1alpha1",),
    fetcher=Flavor.KSERVE_AGENT,
    short_names=("tm",),
    paths=(_p("model.storageUri"),),
)

SELDON_MODEL: Final = KindSpec(
    group="mlops.seldon.io",
    kind="Model",
    plural="models",
    versions=("v1alpha1",),
    fetcher=Flavor.SELDON,
    short_names=(),
    paths=(_p("storageUri"),),
)

_PREDICTORS = f"predictors.{ITEM}"
SELDON_DEPLOYMENT: Final = KindSpec(
    group="machinelearning.seldon.io",
    kind="SeldonDeployment",
    plural="seldondeployments",
    versions=("v1", "v1alpha2", "v1alpha3"),
    fetcher=Flavor.SELDON,
    short_names=("sdep",),
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
# Flavor lookups name a kind by its kind or its plural, in any case.
_BY_NAME: Final = {(k.group, name): k for k in KINDS for name in (k.singular, k.plural)}


def for_kind(group: str, kind: str) -> KindSpec | None:
    """The declaration of a kind, or None for a kind added by the user's own rule."""
    return _BY_GROUP_KIND.get((group, kind))


def _domain(group: str) -> str:
    return ".".join(group.split(".")[-2:])


# A kind of a vendor's API domain that the catalogue does not list (added by a user's rule,
# e.g. another KServe kind) is fetched as the domain's first declared kind is.
_BY_DOMAIN: Final = {_domain(k.group): k.fetcher for k in reversed(KINDS)}


def _flavor_of(group: str, kind: str) -> Flavor:
    declared = _BY_NAME.get((group, kind.lower()))
    if declared is not None:
        return declared.fetcher
    return _BY_DOMAIN.get(_domain(group), Flavor.GENERIC) if "." in group else Flavor.GENERIC


_FLAVORS: dict[tuple[str, str], Flavor] = {}
