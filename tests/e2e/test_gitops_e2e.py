"""GitOps tools' view of templated manifests, on the real apiserver with the webhook in front.

What Argo CD, Flux and Helm do to detect and correct drift, done with the same
client operations: ``kubectl diff`` after a client-side and after a server-side
apply, re-applies, the server-side-apply dry run Flux compares against the live
object, and ``helm upgrade`` of a user's chart holding a templated
InferenceService. docs/gitops.md holds the recipes these back.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.cluster import NS
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.gitops import assert_resolved, live, manifests, versions, write
from tests.support.modelpin_server import ModelpinServer
from tests.support.tools import Helm


def test_client_side_apply_then_diff_shows_nothing_and_reapply_writes_nothing(
    webhook: ModelpinServer, cluster: ControlPlane, catalog: Catalog, tmp_path: Path
) -> None:
    docs = manifests("csa")
    path = write(tmp_path / "app.yaml", docs)
    cluster.kubectl("apply", "-f", str(path))
    assert_resolved(cluster, docs, catalog)
    before = versions(cluster, docs)
    # kubectl diff (what Argo CD's and Flux's previews amount to) dry-runs the patch through admission:
    # the webhook turns the templates back into the stored URIs, so live and desired agree.
    diff = cluster.kubectl("diff", "-f", str(path), check=False)
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr
    cluster.kubectl("apply", "-f", str(path))
    assert versions(cluster, docs) == before


def test_server_side_apply_then_diff_dry_run_and_reapply_change_nothing(
    webhook: ModelpinServer, cluster: ControlPlane, catalog: Catalog, tmp_path: Path
) -> None:
    docs = manifests("ssa")
    path = write(tmp_path / "app.yaml", docs)
    ssa = ("--server-side", "--field-manager=gitops")
    cluster.kubectl("apply", *ssa, "-f", str(path))
    assert_resolved(cluster, docs, catalog)
    before = versions(cluster, docs)
    diff = cluster.kubectl("diff", *ssa, "-f", str(path), check=False)
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr

    # Flux's drift detection: a forced server-side-apply dry run, compared with the live object.
    dry = cluster.kubectl("apply", *ssa, "--force-conflicts", "--dry-run=server", "-o", "json", "-f", str(path))
    dry_objects = json.loads(dry.stdout)["items"]
    assert len(dry_objects) == len(docs)
    for dried, doc in zip(dry_objects, docs, strict=True):
        stored = live(cluster, doc)
        assert dried["spec"] == stored["spec"]
        for key in ("resourceVersion", "generation", "labels", "annotations", "managedFields"):
            assert dried["metadata"].get(key) == stored["metadata"].get(key), key

    cluster.kubectl("apply", *ssa, "-f", str(path))
    assert versions(cluster, docs) == before


def test_the_diff_does_see_a_real_change(
    webhook: ModelpinServer, cluster: ControlPlane, catalog: Catalog, tmp_path: Path
) -> None:
    # The empty diffs above are not kubectl ignoring custom resources: a changed template shows.
    docs = manifests("changed")
    path = write(tmp_path / "app.yaml", docs)
    cluster.kubectl("apply", "--server-side", "--field-manager=gitops", "-f", str(path))
    docs[1]["spec"]["predictor"]["sklearn"]["storageUri"] = "models:/fraud/1"
    write(path, docs)
    diff = cluster.kubectl("diff", "--server-side", "--field-manager=gitops", "-f", str(path), check=False)
    assert diff.returncode == 1, diff.stderr
    assert catalog.location("fraud", "1") in diff.stdout and catalog.location("fraud", "2") in diff.stdout


USER_CHART = {
    "Chart.yaml": "apiVersion: v2\nname: fraud-serving\nversion: 1.0.0\n",
    "values.yaml": "team: payments\n",
    # models:/ needs no escaping in a Helm template; the seed form's braces do.
    "templates/isvc.yaml": """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {{ .Release.Name }}-fraud
  labels:
    team: {{ .Values.team }}
spec:
  predictor:
    model:
      modelFormat:
        name: sklearn
      storageUri: models:/fraud/2
  transformer:
    containers:
      - name: transformer
        image: example.com/jukebox-transformer:1
        env:
          - name: STORAGE_URI
            value: '{{ "{{" }} mlflow.modelcar["jukebox@prod"] }}'
""",
}


def test_helm_upgrade_of_a_chart_with_a_templated_inference_service(
    webhook: ModelpinServer, cluster: ControlPlane, catalog: Catalog, tmp_path: Path
) -> None:
    chart = tmp_path / "fraud-serving"
    for name, text in USER_CHART.items():
        (chart / name).parent.mkdir(parents=True, exist_ok=True)
        (chart / name).write_text(text)
    helm = Helm(tmp_path / "helm-home", cluster.kubeconfig)
    doc = {"kind": "InferenceService", "metadata": {"name": "gitops-fraud"}}
    commit = catalog.client.get_model_version("jukebox", "1").tags["git_commit"]
    want = {
        "predictor": catalog.location("fraud", "2"),
        "transformer": f"oci://quay.io/rhoai/jukebox:{commit}",
    }

    def uris() -> dict[str, str]:
        spec = live(cluster, doc)["spec"]
        return {
            "predictor": spec["predictor"]["model"]["storageUri"],
            "transformer": spec["transformer"]["containers"][0]["env"][0]["value"],
        }

    helm("install", "gitops", str(chart), "-n", NS)
    try:
        assert uris() == want
        # A change elsewhere in the chart: Helm's three-way merge patches only the label, the webhook
        # keeps the recorded resolution.
        helm("upgrade", "gitops", str(chart), "-n", NS, "--set", "team=risk")
        stored = live(cluster, doc)
        assert stored["metadata"]["labels"]["team"] == "risk"
        assert uris() == want
        # The next upgrade with the same values finds nothing to change: no write at all.
        before = (stored["metadata"]["resourceVersion"], stored["metadata"]["generation"])
        helm("upgrade", "gitops", str(chart), "-n", NS, "--set", "team=risk")
        after = live(cluster, doc)
        assert (after["metadata"]["resourceVersion"], after["metadata"]["generation"]) == before
        # And Helm's own record still holds the templates, so a rollback or a re-render stays templated.
        manifest = helm("get", "manifest", "gitops", "-n", NS).stdout
        assert "models:/fraud/2" in manifest and '{{ mlflow.modelcar["jukebox@prod"] }}' in manifest
    finally:
        helm("uninstall", "gitops", "-n", NS, check=False)
