"""Session-wide real services: one mlflow server, a test CA, a modelpin server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.catalog import Catalog, populate
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, modelpin_config
from webhook.tools import certs


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


@pytest.fixture(scope="session")
def modelpin(
    catalog: Catalog, mlflow_server: MlflowServer, ca_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelpinServer]:
    server = ModelpinServer(tmp_path_factory.mktemp("modelpin"), modelpin_config(mlflow_server.url), ca_dir)
    try:
        yield server
    finally:
        server.stop()
