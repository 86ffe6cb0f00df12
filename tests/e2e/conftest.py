"""A session-wide real control plane (etcd + kube-apiserver) for the e2e tests, and reconcilers to run on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import apply_docs, install_cluster, wait_for_webhook, webhook_configuration
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, modelpin_config
from tests.support.reconciler_process import (
    ACCOUNT,
    Reconciler,
    Start,
    account_kubeconfig,
    install_reconciler_account,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Hooks in a conftest see every collected item; mark only the ones under tests/e2e.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    # Builds the binaries on first use (hack/controlplane.sh); a failed build or start errors the test.
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane")).start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def cluster(control_plane: ControlPlane) -> ControlPlane:
    install_cluster(control_plane)
    return control_plane


@pytest.fixture(scope="session")
def webhook(
    cluster: ControlPlane,
    catalog: Catalog,
    mlflow_server: MlflowServer,
    ca_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ModelpinServer]:
    """``modelpin serve`` registered with the apiserver through the shipped webhook configuration."""
    # mutual TLS as README's trust model recommends: /mutate answers only the apiserver's client certificate
    assert cluster.webhook_client is not None
    server = ModelpinServer(
        tmp_path_factory.mktemp("e2e-modelpin"),
        modelpin_config(mlflow_server.url),
        ca_dir,
        extra_args=["--client-ca", str(cluster.webhook_client.ca)],
    )
    apply_docs(cluster, [webhook_configuration(cluster, server)])
    wait_for_webhook(cluster)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reconciler_account(cluster: ControlPlane) -> str:
    """The reconciler's ServiceAccount installed (install_reconciler_account); its username."""
    install_reconciler_account(cluster)
    return ACCOUNT


@pytest.fixture()
def start_reconciler(
    webhook: ModelpinServer,
    cluster: ControlPlane,
    mlflow_server: MlflowServer,
    ca_dir: Path,
    tmp_path: Path,
    reconciler_account: str,
) -> Iterator[Start]:
    """Start reconcilers against the test cluster (behind the webhook), as the reconciler's ServiceAccount.

    All are stopped afterwards.
    """
    started: list[Reconciler] = []

    def start(*, lease: str, poll: float, identity: str, **options: Any) -> Reconciler:
        if options.get("kubeconfig") is None:
            options["kubeconfig"] = account_kubeconfig(cluster, tmp_path / f"{identity}.kubeconfig")
        rec = Reconciler(
            tmp_path / identity,
            cluster,
            mlflow_server.url,
            ca_dir,
            lease=lease,
            poll=poll,
            identity=identity,
            **options,
        )
        started.append(rec)
        return rec

    yield start
    for rec in started:
        rec.stop()
