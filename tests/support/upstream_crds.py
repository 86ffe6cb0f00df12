"""The upstream KServe and Seldon CRDs (CI always has them: .ci/run fails without them)."""

from __future__ import annotations

from typing import Any

import yaml

from tests.support.tools import REPO

# resolved: kubectl reads a directory given through a symlink as a file
UPSTREAM_CRDS = (REPO.parent / "shared" / "crds-upstream").resolve()
ABSENT = f"{UPSTREAM_CRDS} is absent (CI always has it: .ci/run fails without it)"
FILES = {
    "SeldonDeployment": "machinelearning.seldon.io_seldondeployments.yaml",
    "Model": "mlops.seldon.io_models.yaml",
    "InferenceService": "serving.kserve.io_inferenceservices.yaml",
    "TrainedModel": "serving.kserve.io_trainedmodels.yaml",
}


def crd(kind: str) -> dict[str, Any]:
    """The upstream CRD of ``kind`` (SeldonDeployment, Model, InferenceService, TrainedModel)."""
    loaded: dict[str, Any] = yaml.load(
        (UPSTREAM_CRDS / FILES[kind]).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    )
    return loaded
