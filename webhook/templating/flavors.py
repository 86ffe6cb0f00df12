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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Need:
    """The flavor a field's model needs and where the object says so (for messages)."""

    flavor: str
    server: str  # the name as written, e.g. "SKLEARN_SERVER"
    where: str  # JSON pointer of the field that names the server


def needed_flavor(group: str, kind: str, obj: Mapping[str, Any], pointer: str) -> Need | None:
    """The flavor the model of the template field at ``pointer`` needs, or None when unknown.

    ``obj`` is the admitted object and ``pointer`` an RFC 6901 pointer into it
    (``/spec/predictor/model/storageUri``).
    """
    tokens = _tokens(pointer)
    if len(tokens) < 2 or tokens[0] != "spec":
        return None
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return None
    if group.endswith("kserve.io"):
        if kind.lower() in ("trainedmodel", "trainedmodels"):
            return _lookup("kserve", _at(spec, ["model", "framework"]), "/spec/model/framework")
        return _kserve(spec, tokens[1:])
    if group == "machinelearning.seldon.io":
        return _seldon_v1(spec, tokens[1:])
    if group == "mlops.seldon.io" and kind.lower() in ("model", "models"):
        return _seldon_v2(spec)
    return None


def _kserve(spec: Mapping[str, Any], path: Sequence[str]) -> Need | None:
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
        return _lookup("kserve", _at(spec, [*base, "model", "modelFormat", "name"]), f"{prefix}/model/modelFormat/name")
    if rest and rest[0] in _KSERVE_LEGACY_KEYS:
        return _lookup("kserve", rest[0], f"{prefix}/{rest[0]}")
    return None


def _seldon_v1(spec: Mapping[str, Any], path: Sequence[str]) -> Need | None:
    # A graph node holds its modelUri beside its implementation: only the field's own node counts,
    # a parent's server runs the parent's model.
    node_path = list(path[:-1])
    if "graph" not in node_path:
        return None
    node = _at(spec, node_path)
    if not isinstance(node, Mapping):
        return None
    return _lookup("seldon-v1", node.get("implementation"), "/spec/" + "/".join([*node_path, "implementation"]))


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


def _at(node: object, path: Sequence[str]) -> object:
    for token in path:
        if isinstance(node, Mapping):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def _tokens(pointer: str) -> list[str]:
    if not pointer.startswith("/"):
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]
