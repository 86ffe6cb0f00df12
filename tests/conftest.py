"""Session-wide real services: one mlflow server, a test CA, a modelpin server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.catalog import PROXIED_ROOT, Catalog, populate
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer
from webhook import certs


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, ca_dir: Path) -> Iterator[MlflowServer]:
    # MLflow delivers webhooks over HTTPS with certificate verification: it must trust the test CA.
    certs.ensure_ca(ca_dir)
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"), trusted_ca=ca_dir / "ca.crt")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def catalog(mlflow_server: MlflowServer) -> Catalog:
    return populate(mlflow_server.url)


@pytest.fixture(scope="session")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ca")


def modelpin_config(tracking_uri: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "default_selector": "@champion",
        "registries": {
            "mlflow": {"tracking_uri": tracking_uri, "artifact_roots": {"mlflow-artifacts:/": PROXIED_ROOT}},
        },
        "profiles": {"modelcar": "oci://quay.io/rhoai/{name}:{tags[git_commit]}"},
        "namespaces": {
            "restricted": {"models": ["fraud*"], "registries": ["mlflow"]},
            "staging": {"default_selector": "/Staging"},
            "nodefault": {},
        },
        "cache": {"pinned_ttl_seconds": 3600, "floating_ttl_seconds": 30, "max_stale_seconds": 600},
        "lookup_deadline_seconds": 2.0,
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def modelpin(
    catalog: Catalog, mlflow_server: MlflowServer, ca_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelpinServer]:
    server = ModelpinServer(tmp_path_factory.mktemp("modelpin"), modelpin_config(mlflow_server.url), ca_dir)
    try:
        yield server
    finally:
        server.stop()
