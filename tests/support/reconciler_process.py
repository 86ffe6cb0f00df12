"""``modelpin reconcile`` as a process of its own, run as the shipped ServiceAccount on the test control plane."""

from __future__ import annotations

import ssl
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.cluster import NS, apply_docs, base_docs
from tests.e2e.controlplane import ControlPlane
from tests.support.modelpin_server import modelpin_config
from webhook.tools import certs
from webhook.tools.kubeconfigs import write_single_user
from webhook.tools.processes import Process, free_port

ACCOUNT = "system:serviceaccount:modelpin-system:modelpin-reconciler"  # the reconciler's ServiceAccount
SECRET = "e2e-shared-secret"


def reconciler_section(lease: str, poll: float, *, lease_seconds: int = 4, lease_namespace: str = NS) -> dict[str, Any]:
    """The configuration's ``reconciler`` section: a lease of the test's own, a short poll, rare warnings."""
    return {
        "lease_name": lease,
        "lease_namespace": lease_namespace,
        "lease_duration_seconds": lease_seconds,
        "poll_interval_seconds": poll,
        "warning_interval_seconds": 600,
    }


class Reconciler:
    def __init__(
        self,
        workdir: Path,
        cp: ControlPlane,
        tracking_uri: str,
        ca_dir: Path,
        *,
        lease: str,
        poll: float,
        identity: str,
        secret: bool = True,
        lease_seconds: int = 4,
        lease_namespace: str = NS,
        kubeconfig: Path | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        """``overrides``: top-level sections of the configuration that replace the ones built here."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        bundle = certs.issue(ca_dir, ["localhost", "127.0.0.1"])
        config = modelpin_config(tracking_uri)
        config["reconciler"] = reconciler_section(
            lease, poll, lease_seconds=lease_seconds, lease_namespace=lease_namespace
        )
        config.update(overrides or {})
        # also what `modelpin status --config` reads in the tests that start this reconciler
        self.config_path = cfg = workdir / "config.yaml"
        cfg.write_text(yaml.safe_dump(config))
        env = {"MODELPIN_MLFLOW_WEBHOOK_SECRET": SECRET} if secret else {"MODELPIN_MLFLOW_WEBHOOK_SECRET": ""}
        self.process = Process(
            [
                sys.executable,
                "-m",
                "webhook",
                "reconcile",
                "--kubeconfig",
                str(kubeconfig or cp.kubeconfig),
                "--config",
                str(cfg),
                "--port",
                str(self.port),
                "--tls-cert",
                str(bundle.cert),
                "--tls-key",
                str(bundle.key),
                "--identity",
                identity,
                "--log-level",
                "info",
            ],
            workdir / "reconciler.log",
            env=env,
            cwd=workdir,
        )
        self.tls = ssl.create_default_context(cafile=str(bundle.ca_cert))
        self.process.wait_until(lambda: self.get("/healthz").status_code == 200, 60, "modelpin reconcile")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, verify=self.tls, timeout=3)

    def leading(self) -> bool:
        try:
            ready = self.get("/readyz")
        except httpx.HTTPError:
            return False
        return ready.status_code == 200 and ready.json()["leader"] is True

    def holds_lease(self) -> bool:
        """Has taken the lease and started work, synced or not (readiness waits for the sync)."""
        try:
            return self.get("/readyz").json()["leader"] is True
        except (httpx.HTTPError, ValueError):
            return False

    def wait_leading(self, timeout: float = 30) -> None:
        self.process.wait_until(self.leading, timeout, "reconciler leadership")

    def state(self) -> dict[str, Any]:
        body: dict[str, Any] = self.get("/readyz").json()
        return body

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, by name and sorted labels."""
        found = {}
        for family in text_string_to_metric_families(self.get("/metrics").text):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return found

    def wait_synced(self, at_least: int = 0, timeout: float = 30) -> int:
        """Leading, every kind listed and compared, and at least this many objects indexed."""
        self.process.wait_until(
            lambda: self.state()["synced"] and self.state()["indexed"] >= at_least, timeout, "reconciler index"
        )
        return int(self.state()["indexed"])

    def stop(self) -> None:
        self.process.stop()


Start = Callable[..., Reconciler]


def account_kubeconfig(cluster: ControlPlane, path: Path, server: str | None = None) -> Path:
    """A kubeconfig for the reconciler's own ServiceAccount (a bound token), at ``server`` or the apiserver."""
    token = cluster.kubectl(
        "create", "token", "modelpin-reconciler", "-n", "modelpin-system", "--duration=2h"
    ).stdout.strip()
    return write_single_user(
        path, server or cluster.server, cluster.ca_file, {"token": token}, cluster="e2e", user_name="reconciler"
    )


def install_reconciler_account(cluster: ControlPlane, lease_role: str = "e2e-reconciler-leases") -> None:
    """The shipped ServiceAccount and roles; the webhook honours refresh tokens from this account only.

    The reconcilers here use leases of their own in the test namespace, which the shipped
    leader-election Role (one lease in modelpin-system) does not cover: ``lease_role`` does.
    """
    kinds = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    leases = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": lease_role, "namespace": NS},
        "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": lease_role, "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": lease_role},
        "subjects": [{"kind": "ServiceAccount", "name": "modelpin-reconciler", "namespace": "modelpin-system"}],
    }
    apply_docs(cluster, [d for d in base_docs(cluster) if d["kind"] in kinds] + [leases, binding])
