"""MLflow 3 on a real apiserver: logged models referenced by id, and the servability check.

Models are logged with MLflow 3's own ``log_model`` into the session's ``mlflow server``
(proxied artifacts). A ``modelpin serve`` of this module's own, whose configuration checks
servability in two namespaces (warn, deny), takes the shipped webhook configuration for the
module; the shared server gets it back afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.pyfunc.model import PythonModel
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

from tests.e2e.cluster import NS, apply_docs, wait_for_webhook, webhook_configuration
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import PROXIED_ROOT, Catalog
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, modelpin_config
from tests.support.reconciler_process import Start

WARN_NS, DENY_NS = "mlflow3-warn", "mlflow3-deny"
FIELD = "/spec/predictor/model/storageUri"


class Echo(PythonModel):
    def predict(self, context: object, model_input: list[str], params: object = None) -> list[str]:
        return model_input


@dataclass(frozen=True)
class Models:
    sklearn_id: str  # models:/m-<id> from log_model
    sklearn_location: str  # where the logged model's artifacts are, as the webhook writes it
    pyfunc: str  # registered name, version 1: python_function only
    unreadable: str  # registered name, version 1 at an s3:// location nobody here can read


@pytest.fixture(scope="module")
def models(mlflow_server: MlflowServer, catalog: Catalog) -> Models:
    suffix = uuid.uuid4().hex[:8]
    mlflow.set_tracking_uri(mlflow_server.url)
    client = MlflowClient(mlflow_server.url)
    x, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(LogisticRegression().fit(x, y), name="model")
        mlflow.pyfunc.log_model(name="echo", python_model=Echo(), registered_model_name=f"e2e-pyfunc-{suffix}")
    client.create_registered_model(f"e2e-s3-{suffix}")
    client.create_model_version(f"e2e-s3-{suffix}", f"s3://modelpin-unreadable-{suffix}/1/model")
    location = client.get_logged_model(info.model_id).artifact_location
    assert location.startswith("mlflow-artifacts:/")
    mapped = PROXIED_ROOT + location[len("mlflow-artifacts:/") :]
    return Models(info.model_id, mapped, f"e2e-pyfunc-{suffix}", f"e2e-s3-{suffix}")


@pytest.fixture(scope="module")
def checking(
    webhook: ModelpinServer,
    cluster: ControlPlane,
    mlflow_server: MlflowServer,
    ca_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ModelpinServer]:
    """A webhook that checks servability in WARN_NS (warn) and DENY_NS (deny), off elsewhere."""
    base = modelpin_config(mlflow_server.url)
    namespaces = {**base["namespaces"], WARN_NS: {"servability": "warn"}, DENY_NS: {"servability": "deny"}}
    for ns in (WARN_NS, DENY_NS):
        cluster.kubectl("create", "namespace", ns, check=False)
    assert cluster.webhook_client is not None
    server = ModelpinServer(
        tmp_path_factory.mktemp("mlflow3-modelpin"),
        modelpin_config(mlflow_server.url, namespaces=namespaces),
        ca_dir,
        extra_args=["--client-ca", str(cluster.webhook_client.ca)],
    )
    try:
        apply_docs(cluster, [webhook_configuration(cluster, server)])
        wait_for_webhook(cluster)
        yield server
    finally:
        apply_docs(cluster, [webhook_configuration(cluster, webhook)])
        wait_for_webhook(cluster)
        server.stop()


def isvc(name: str, uri: str, namespace: str = NS, model_format: str = "sklearn") -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"predictor": {"model": {"modelFormat": {"name": model_format}, "storageUri": uri}}},
    }


def apply(cluster: ControlPlane, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=False)


def stored(cluster: ControlPlane, name: str, namespace: str = NS) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(cluster.kubectl("get", "isvc", name, "-n", namespace, "-o", "json").stdout)
    return out


def test_a_logged_model_by_id_resolves_is_pinned_and_the_reconciler_leaves_it(
    checking: ModelpinServer, cluster: ControlPlane, models: Models, catalog: Catalog, start_reconciler: Start
) -> None:
    name = f"logged-{uuid.uuid4().hex[:6]}"
    done = apply(cluster, isvc(name, f"models:/{models.sklearn_id}"))
    assert done.returncode == 0, done.stderr
    obj = stored(cluster, name)
    assert obj["spec"]["predictor"]["model"]["storageUri"] == models.sklearn_location
    record = json.loads(obj["metadata"]["annotations"]["modelpin.io/resolved"])[FIELD]
    assert (record["model"], record["version"], record["uri"]) == (
        models.sklearn_id,
        models.sklearn_id,
        models.sklearn_location,
    )
    # re-applying the same manifest writes nothing (kubectl sends the template again; it resolves the same)
    again = apply(cluster, isvc(name, f"models:/{models.sklearn_id}"))
    assert again.returncode == 0, again.stderr
    assert stored(cluster, name)["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    # status, as the operator runs it, calls it pinned
    argv = [sys.executable, "-m", "webhook", "status", "-n", NS, "-o", "json"]
    argv += ["--config", str(checking.config_path), "--kubeconfig", str(cluster.kubeconfig)]
    status = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert status.returncode in (0, 1), status.stderr
    (row,) = [r for r in json.loads(status.stdout)["objects"] if r["name"] == name]
    assert (row["state"], row["running_version"]) == ("pinned", models.sklearn_id)
    # a polling reconciler indexes the object and never touches it, while an alias beside it moves
    moving = f"rec3-{uuid.uuid4().hex[:8]}"
    catalog.client.set_registered_model_alias(
        moving, "champion", catalog.new_run_version(moving, experiment=catalog.s3_experiment)
    )
    follower = f"follows-{uuid.uuid4().hex[:6]}"
    assert apply(cluster, isvc(follower, f"models:/{moving}@champion")).returncode == 0
    before = stored(cluster, name)["metadata"]["resourceVersion"]
    reconciler = start_reconciler(lease="mlflow3", poll=1.0, identity="mlflow3", secret=False)
    reconciler.wait_leading()
    reconciler.wait_synced(at_least=2)
    v2 = catalog.new_run_version(moving, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(moving, "champion", v2)
    deadline = time.monotonic() + 20
    while stored(cluster, follower)["spec"]["predictor"]["model"]["storageUri"] != catalog.location(moving, v2):
        assert time.monotonic() < deadline, "the reconciler never moved the alias follower"
        time.sleep(0.2)
    time.sleep(2.5)  # two more polls
    after = stored(cluster, name)
    assert after["metadata"]["resourceVersion"] == before
    assert "modelpin.io/refresh" not in after["metadata"]["annotations"]


def test_servability_warn_prints_kubectls_warning(
    checking: ModelpinServer, cluster: ControlPlane, models: Models
) -> None:
    done = apply(cluster, isvc("pyfunc-on-sklearn", f"models:/{models.pyfunc}/1", WARN_NS))
    assert done.returncode == 0, done.stderr
    assert "Warning:" in done.stderr and FIELD in done.stderr
    assert "'sklearn' flavor" in done.stderr and "python_function" in done.stderr and "version 1" in done.stderr
    print(f"\n$ kubectl apply (servability warn)\n{done.stderr}")


def test_servability_deny_refuses_naming_the_flavor(
    checking: ModelpinServer, cluster: ControlPlane, models: Models
) -> None:
    refused = apply(cluster, isvc("pyfunc-on-sklearn", f"models:/{models.pyfunc}/1", DENY_NS))
    assert refused.returncode != 0
    assert "denied the request" in refused.stderr and FIELD in refused.stderr
    assert "'sklearn' flavor" in refused.stderr and "python_function" in refused.stderr
    print(f"\n$ kubectl apply (servability deny)\n{refused.stderr}")
    # the same server on a version that has the flavor: admitted, no warning
    fine = apply(cluster, isvc("logged-on-sklearn", f"models:/{models.sklearn_id}", DENY_NS))
    assert fine.returncode == 0 and "Warning:" not in fine.stderr, fine.stderr
    # an MLflow server (python_function) runs the pyfunc model
    pyfunc = apply(cluster, isvc("pyfunc-on-mlflow", f"models:/{models.pyfunc}/1", DENY_NS, model_format="mlflow"))
    assert pyfunc.returncode == 0, pyfunc.stderr


def test_an_unreadable_s3_version_is_not_checked_and_admitted(
    checking: ModelpinServer, cluster: ControlPlane, models: Models
) -> None:
    done = apply(cluster, isvc("s3-unreadable", f"models:/{models.unreadable}/1", DENY_NS))
    assert done.returncode == 0, done.stderr
    assert "Warning:" in done.stderr and "not checked" in done.stderr
    assert stored(cluster, "s3-unreadable", DENY_NS)["spec"]["predictor"]["model"]["storageUri"].startswith("s3://")
