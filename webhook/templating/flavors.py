"""Which MLmodel flavor the server an object runs needs (the servability check's question).

An MLflow model folder holds an ``MLmodel`` file whose ``flavors`` keys say how
the model can be loaded (``sklearn``, ``python_function``, ...). A serving
runtime loads one of them: KServe's sklearn server reads the pickled estimator
the ``sklearn`` flavor writes, MLServer's MLflow runtime loads
``python_function``. A model logged with a custom ``mlflow.pyfunc.PythonModel``
has ``python_function`` only, so it runs on an MLflow server and not on a
sklearn one.

``NEEDED_FLAVOR`` is the one table. A server name missing from it (Triton,
PMML, a custom container, ...) needs no MLflow flavor modelpin can check, and
the answer is ``None``: not checked, never refused.

Names are matched as the CRDs carry them, case-insensitively:

- KServe ``InferenceService``: ``predictor.model.modelFormat.name`` (also in
  each ``spec.canary[].predictor``), or the legacy framework key
  (``predictor.sklearn``); ``TrainedModel``: ``spec.model.framework``. KServe
  0.21's ClusterServingRuntimes name these formats.
- Seldon v1 ``SeldonDeployment``: the graph node's ``implementation``.
- Seldon v2 ``Model``: ``spec.requirements`` (MLServer runtime names).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

PYFUNC = "python_function"

# server or format name -> the MLmodel flavor it loads
NEEDED_FLAVOR: Mapping[str, Mapping[str, str]] = {
    # KServe modelFormat.name, legacy predictor keys and TrainedModel frameworks
    "kserve": {
        "sklearn": "sklearn",  # kserve-sklearnserver, kserve-mlserver, predictive server
        "xgboost": "xgboost",  # kserve-xgbserver, kserve-mlserver, predictive server
        "lightgbm": "lightgbm",  # kserve-lgbserver, kserve-mlserver, predictive server
        "tensorflow": "tensorflow",  # kserve-tensorflow-serving
        "pytorch": "pytorch",  # kserve-torchserve
        "onnx": "onnx",  # kserve-tritonserver
        "paddle": "paddle",  # kserve-paddleserver
        "mlflow": PYFUNC,  # kserve-mlserver's MLflow runtime
        "huggingface": "transformers",  # kserve-huggingfaceserver
    },
    # Seldon v1 graph node implementation (prepackaged servers)
    "seldon-v1": {
        "sklearn_server": "sklearn",
        "xgboost_server": "xgboost",
        "tensorflow_server": "tensorflow",
        "mlflow_server": PYFUNC,
        "huggingface_server": "transformers",
    },
    # Seldon v2 Model spec.requirements (MLServer runtimes)
    "seldon-v2": {
        "sklearn": "sklearn",
        "xgboost": "xgboost",
        "lightgbm": "lightgbm",
        "mlflow": PYFUNC,
        "tensorflow": "tensorflow",
        "pytorch": "pytorch",
        "onnx": "onnx",
        "huggingface": "transformers",
    },
}

# InferenceService predictor keys that name a framework (the pre-modelFormat shape)
_KSERVE_LEGACY_KEYS = frozenset(
    {"sklearn", "xgboost", "lightgbm", "tensorflow", "pytorch", "onnx", "paddle", "huggingface", "pmml", "triton"}
)


class Need(NamedTuple):
    """The flavor a field's model needs and where the object says so (for messages).

    A named tuple: one is built per checked field of every review, at a third of a frozen dataclass's cost.
    """

    flavor: str
    server: str  # the name as written, e.g. "SKLEARN_SERVER"
    where: str  # JSON pointer of the field that names the server


@dataclass(frozen=True, slots=True)
class _Route:
    """Where, for one (group, kind, pointer), the name of the field's server is found.

    What the pointer alone decides, worked out once: each call then reads one value
    in the spec. ``path`` is under ``spec``; ``server`` is set when the pointer itself
    names it (a legacy KServe framework key); ``requirements`` for a Seldon v2 Model.
    """

    table: str
    where: str
    path: tuple[tuple[str, int | None], ...] = ()  # tokens under spec, each with its list index
    server: str | None = None
    requirements: bool = False


# Routes of keys up to this many characters are remembered (the last 4,096 used): the
# pointers of real objects, never a megabyte-long one from a made-up review.
MEMO_MAX_CHARS = 512


def needed_flavor(group: str, kind: str, obj: Mapping[str, Any], pointer: str) -> Need | None:
    """The flavor the model of the template field at ``pointer`` needs, or None when unknown.

    ``obj`` is the admitted object and ``pointer`` an RFC 6901 pointer into it
    (``/spec/predictor/model/storageUri``).
    """
    if len(group) + len(kind) + len(pointer) <= MEMO_MAX_CHARS:
        route = _remembered_route(group, kind, pointer)
    else:
        route = _route(group, kind, pointer)
    if route is None:
        return None
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return None
    if route.requirements:
        return _seldon_v2(spec)
    server = route.server if route.server is not None else _walk(spec, route.path)
    return _lookup(route.table, server, route.where)


def _route(group: str, kind: str, pointer: str) -> _Route | None:
    tokens = _tokens(pointer)
    if len(tokens) < 2 or tokens[0] != "spec":
        return None
    if group.endswith("kserve.io"):
        if kind.lower() in ("trainedmodel", "trainedmodels"):
            return _Route("kserve", "/spec/model/framework", _steps(["model", "framework"]))
        return _kserve(tokens[1:])
    if group == "machinelearning.seldon.io":
        return _seldon_v1(tokens[1:])
    if group == "mlops.seldon.io" and kind.lower() in ("model", "models"):
        return _Route("seldon-v2", "/spec/requirements", requirements=True)
    return None


_remembered_route = functools.lru_cache(maxsize=4096)(_route)


def _kserve(path: Sequence[str]) -> _Route | None:
    # The component is spec.predictor or spec.canary[i].predictor; transformers and
    # explainers run code of their own, not the registered model's flavor.
    if path[:1] == ["predictor"]:
        base: list[str] = ["predictor"]
    elif len(path) >= 3 and path[0] == "canary" and path[2] == "predictor":
        base = list(path[:3])
    else:
        return None
    rest = path[len(base) :]
    prefix = "/spec/" + "/".join(base)
    if rest[:1] == ["model"]:
        return _Route("kserve", f"{prefix}/model/modelFormat/name", _steps([*base, "model", "modelFormat", "name"]))
    if rest and rest[0] in _KSERVE_LEGACY_KEYS:
        return _Route("kserve", f"{prefix}/{rest[0]}", server=rest[0])
    return None


def _seldon_v1(path: Sequence[str]) -> _Route | None:
    # A graph node holds its modelUri beside its implementation: only the field's own node counts,
    # a parent's server runs the parent's model.
    node_path = list(path[:-1])
    if "graph" not in node_path:
        return None
    return _Route(
        "seldon-v1", "/spec/" + "/".join([*node_path, "implementation"]), _steps([*node_path, "implementation"])
    )


def _seldon_v2(spec: Mapping[str, Any]) -> Need | None:
    requirements = spec.get("requirements")
    if not isinstance(requirements, list):
        return None
    for index, requirement in enumerate(requirements):
        found = _lookup("seldon-v2", requirement, f"/spec/requirements/{index}")
        if found is not None:
            return found
    return None


def _lookup(table: str, server: object, where: str) -> Need | None:
    if not isinstance(server, str):
        return None
    flavor = NEEDED_FLAVOR[table].get(server.strip().lower())
    return Need(flavor, server, where) if flavor is not None else None


def _steps(path: Sequence[str]) -> tuple[tuple[str, int | None], ...]:
    """Each token with its list index, if it can be one: worked out once per route."""
    return tuple((token, int(token) if token.isdigit() else None) for token in path)


def _walk(node: object, steps: tuple[tuple[str, int | None], ...]) -> object:
    for token, index in steps:
        # dict, not Mapping: objects under review are parsed JSON, and an ABC check costs
        # several times a dict's on this per-field path
        if isinstance(node, dict):
            node = node.get(token)
        elif index is not None and isinstance(node, list) and index < len(node):
            node = node[index]
        else:
            return None
    return node


def _tokens(pointer: str) -> list[str]:
    if not pointer.startswith("/"):
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]
