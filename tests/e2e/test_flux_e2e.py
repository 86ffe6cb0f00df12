"""Flux's own apply engine against templated manifests, on the real apiserver with the webhook in front.

kustomize-controller applies and detects drift with github.com/fluxcd/pkg/ssa;
hack/flux-ssa drives that module as the controller does (its field manager,
owner labels, apply and cleanup options) and `flux diff` does (Diff). What
is not run here: kustomize-controller itself, source-controller, the
kustomize build, inventory, pruning and health checks. docs/gitops.md says so.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.cluster import NS
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.gitops import assert_resolved, live, manifests, versions, write
from tests.support.modelpin_server import ModelpinServer
from tests.support.tools import tool

FLUX_GROUP = "kustomize.toolkit.fluxcd.io"


def flux_ssa(cluster: ControlPlane, mode: str, path: Path) -> tuple[int, list[dict[str, Any]]]:
    """Run flux-ssa apply|diff; 0 is success (diff: no drift), 1 is drift (diff only), 2 an error."""
    argv = [str(tool("flux-ssa")), mode, "--kubeconfig", str(cluster.kubeconfig), "--name", "apps", str(path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert result.returncode in (0, 1), f"{' '.join(argv)} exited {result.returncode}\n{result.stderr}"
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    return result.returncode, entries


def actions(entries: list[dict[str, Any]]) -> dict[str, str]:
    return {e["subject"]: e["action"] for e in entries}


def subjects(docs: list[dict[str, Any]]) -> list[str]:
    return [f"{d['kind']}/{d['metadata']['namespace']}/{d['metadata']['name']}" for d in docs]


def test_flux_apply_creates_then_finds_nothing_to_change_and_no_drift(
    webhook: ModelpinServer, cluster: ControlPlane, catalog: Catalog, tmp_path: Path
) -> None:
    docs = manifests("flux")
    app = tmp_path / "app"
    app.mkdir()
    write(app / "app.yaml", docs)

    code, first = flux_ssa(cluster, "apply", app)
    assert code == 0
    assert actions(first) == dict.fromkeys(subjects(docs), "created")
    assert_resolved(cluster, docs, catalog)
    for doc in docs:
        stored = live(cluster, doc)
        assert stored["metadata"]["labels"][f"{FLUX_GROUP}/name"] == "apps"
        shown = cluster.kubectl(
            "get", doc["kind"], doc["metadata"]["name"], "-n", NS, "--show-managed-fields", "-o", "json"
        )
        managers = {(m["manager"], m["operation"]) for m in json.loads(shown.stdout)["metadata"]["managedFields"]}
        assert ("kustomize-controller", "Apply") in managers, managers
    before = versions(cluster, docs)

    # The next reconciliation: the engine's dry run goes through the webhook, which keeps the stored
    # resolution, so the engine compares equal and writes nothing.
    code, second = flux_ssa(cluster, "apply", app)
    assert code == 0
    assert actions(second) == dict.fromkeys(subjects(docs), "unchanged")
    assert versions(cluster, docs) == before

    code, drift = flux_ssa(cluster, "diff", app)
    assert code == 0, drift
    assert actions(drift) == dict.fromkeys(subjects(docs), "unchanged")
    assert all("diff" not in e for e in drift)
    assert versions(cluster, docs) == before


def test_flux_drift_check_sees_a_changed_template_and_apply_moves_to_it(
    webhook: ModelpinServer, cluster: ControlPlane, catalog: Catalog, tmp_path: Path
) -> None:
    # The empty drift above is not the engine being blind to custom resources: a changed reference shows.
    docs = manifests("flux-moved")
    path = write(tmp_path / "app.yaml", docs)
    assert flux_ssa(cluster, "apply", path)[0] == 0
    isvc = subjects(docs)[1]
    docs[1]["spec"]["predictor"]["sklearn"]["storageUri"] = "models:/fraud/1"
    write(path, docs)

    code, drift = flux_ssa(cluster, "diff", path)
    assert code == 1
    assert actions(drift) == {subjects(docs)[0]: "unchanged", isvc: "configured"}
    (changed,) = [e for e in drift if e["subject"] == isvc]
    assert {"op": "replace", "path": "/spec/predictor/sklearn/storageUri", "value": catalog.location("fraud", "1")} in [
        {k: op[k] for k in ("op", "path", "value") if k in op} for op in changed["diff"]
    ], changed["diff"]

    code, applied = flux_ssa(cluster, "apply", path)
    assert code == 0
    assert actions(applied) == {subjects(docs)[0]: "unchanged", isvc: "configured"}
    stored = live(cluster, docs[1])
    assert stored["spec"]["predictor"]["sklearn"]["storageUri"] == catalog.location("fraud", "1")
