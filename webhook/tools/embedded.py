"""Embedded defaults: a local sqlite MLflow registry and self-signed certificates.

``modelpin serve`` with no registry configured runs on these, so a newcomer
gets a working webhook and a sample review to send it with one command.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson

from webhook.config import RegistryConfig, Settings
from webhook.tools import certs

DATA_DIR = Path("modelpin-data")
DEMO_MODELS = ("iris demo1", "iris demo2", "iris demo3", "iris demo4")
DEMO_ACCOUNT = "modelpindemo"


def registry_config(data_dir: Path) -> RegistryConfig:
    data_dir.mkdir(parents=True, exist_ok=True)
    return RegistryConfig(tracking_uri=f"sqlite:///{(data_dir / 'registry.db').resolve()}")


def seed_demo_models(tracking_uri: str) -> list[str]:
    """Register the demo models if the store has none; returns the names created."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if client.search_registered_models(max_results=1):
        return []
    experiment = client.create_experiment(
        "modelpin-demo",
        artifact_location=f"wasbs://artifacts@{DEMO_ACCOUNT}.blob.core.windows.net/mlflow/1",
    )
    created = []
    for name in DEMO_MODELS:
        run = client.create_run(experiment, run_name=f"train {name}")
        client.set_terminated(run.info.run_id)
        client.create_registered_model(name)
        mv = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        client.set_registered_model_alias(name, "champion", mv.version)
        created.append(name)
    return created


def sample_review(namespace: str = "default") -> dict[str, Any]:
    """The seed's four-model SeldonDeployment as a CREATE review."""

    def node(name: str, model: str, children: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "name": name,
            "modelUri": f'{{{{ mlflow.blob["{model}"] }}}}',
            "envSecretRefName": "seldon-rclone-secret",
            "implementation": "MLFLOW_SERVER",
            "type": "MODEL",
            "children": children,
        }

    graph = node(
        "classifier",
        "iris demo4",
        [
            node("step-one", "iris demo1", [node("step-two", "iris demo2", [])]),
            node("step-three", "iris demo3", []),
        ],
    )
    obj = {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {"name": "mlflow-var", "namespace": namespace},
        "spec": {
            "name": "iris",
            "predictors": [{"name": "default", "replicas": 1, "graph": graph}],
        },
    }
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {
                "group": "machinelearning.seldon.io",
                "version": "v1",
                "kind": "SeldonDeployment",
            },
            "resource": {
                "group": "machinelearning.seldon.io",
                "version": "v1",
                "resource": "seldondeployments",
            },
            "namespace": namespace,
            "operation": "CREATE",
            "object": obj,
            "dryRun": False,
        },
    }


def prepare(settings: Settings, data_dir: Path = DATA_DIR) -> list[str]:
    """Fill in the embedded registry; returns lines telling the user what was made."""
    config = registry_config(data_dir)
    settings.registries[settings.default_registry] = config
    if settings.default_selector is None:
        settings.default_selector = "@champion"
    created = seed_demo_models(config.tracking_uri)
    lines = [f"embedded MLflow registry: {config.tracking_uri}"]
    if created:
        lines.append(f"registered demo models with alias @champion: {', '.join(created)}")
    return lines


def ensure_certs(data_dir: Path = DATA_DIR) -> certs.Bundle:
    return certs.issue(data_dir / "certs", ["localhost", "127.0.0.1", "::1"])


def write_sample(data_dir: Path = DATA_DIR) -> Path:
    path = data_dir / "sample-review.json"
    path.write_bytes(orjson.dumps(sample_review(), option=orjson.OPT_INDENT_2))
    return path
