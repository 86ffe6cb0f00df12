"""modelpin behind a real kube-apiserver, driven with kubectl as a user would.

The apiserver calls ``modelpin serve`` over TLS verified against the caBundle
of the project's own MutatingWebhookConfiguration (manifests/base, with the
Service reference swapped for the local URL); the project's guard policy is
installed as it ships.
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import modelpin_config
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer
from tests.support.reviews import FIXTURES, at

ROOT = Path(__file__).resolve().parents[2]
CRDS = Path(__file__).resolve().parent / "crds"
NS = "e2e"
SEED_MODEL_URIS = (
    "/spec/predictors/0/graph/modelUri",
    "/spec/predictors/0/graph/children/0/modelUri",
    "/spec/predictors/0/graph/children/0/children/0/modelUri",
    "/spec/predictors/0/graph/children/1/modelUri",
)


def base_docs(cp: ControlPlane) -> list[dict[str, Any]]:
    rendered = cp.kubectl("kustomize", str(ROOT / "manifests" / "base")).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


def webhook_configuration(cp: ControlPlane, server: ModelpinServer) -> dict[str, Any]:
    (doc,) = [d for d in base_docs(cp) if d["kind"] == "MutatingWebhookConfiguration"]
    doc = copy.deepcopy(doc)
    for hook in doc["webhooks"]:
        hook["clientConfig"] = {
            "url": f"{server.url}/mutate",
            "caBundle": base64.b64encode(server.ca.read_bytes()).decode(),
        }
    return doc


def apply_docs(cp: ControlPlane, docs: list[dict[str, Any]]) -> None:
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane) -> ControlPlane:
    cp = control_plane
    cp.kubectl("apply", "-f", str(CRDS))
    cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    cp.kubectl("create", "namespace", NS)
    guard = [d for d in base_docs(cp) if d["kind"].startswith("ValidatingAdmissionPolicy")]
    assert {d["kind"] for d in guard} == {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    apply_docs(cp, guard)
    return cp


@pytest.fixture(scope="module")
def webhook(
    cluster: ControlPlane,
    catalog: Catalog,
    mlflow_server: MlflowServer,
    ca_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ModelpinServer]:
    server = ModelpinServer(tmp_path_factory.mktemp("e2e-modelpin"), modelpin_config(mlflow_server.url), ca_dir)
    apply_docs(cluster, [webhook_configuration(cluster, server)])
    wait_for_webhook(cluster)
    yield server
    server.stop()


def wait_for_webhook(cp: ControlPlane) -> None:
    """The apiserver picks up webhook configurations asynchronously."""
    probe = obj_json("seldon-seed.yaml", name="probe")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = cp.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(probe), check=False)
        if out.returncode == 0 and "{{" not in json.dumps(json.loads(out.stdout)["spec"]):
            return
        time.sleep(0.5)
    raise AssertionError(f"webhook never answered: {out.stderr}")


def obj_json(fixture_name: str, name: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((FIXTURES / fixture_name).read_text())
    doc["metadata"]["namespace"] = NS
    if name:
        doc["metadata"]["name"] = name
    return doc


def get(cp: ControlPlane, resource: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(cp.kubectl("get", resource, name, "-n", NS, "-o", "json").stdout)
    return out


def seldon_uri(catalog: Catalog, model: str) -> str:
    loc = catalog.location(model, catalog.version_for(model, "champion"))
    return "wasbs://artifacts/" + loc.split(".blob.core.windows.net/", 1)[1]


def test_apply_stores_resolved_seed_and_reapply_changes_nothing(
    webhook: ModelpinServer, cluster: ControlPlane, catalog: Catalog, tmp_path: Path
) -> None:
    manifest = tmp_path / "seed.yaml"
    manifest.write_text(yaml.safe_dump(obj_json("seldon-seed.yaml")))
    cluster.kubectl("apply", "-f", str(manifest))
    stored = get(cluster, "seldondeployments", "mlflow-var")
    records = json.loads(stored["metadata"]["annotations"]["modelpin.io/resolved"])
    assert stored["metadata"]["labels"]["modelpin.io/managed"] == "true"
    assert set(records) == set(SEED_MODEL_URIS)
    for pointer in SEED_MODEL_URIS:
        assert at(stored, pointer) == seldon_uri(catalog, records[pointer]["model"])
    again = cluster.kubectl("apply", "-f", str(manifest))
    assert "unchanged" in again.stdout
    assert (
        get(cluster, "seldondeployments", "mlflow-var")["metadata"]["resourceVersion"]
        == stored["metadata"]["resourceVersion"]
    )


def test_server_side_apply_of_an_inference_service(
    webhook: ModelpinServer, cluster: ControlPlane, catalog: Catalog
) -> None:
    doc = obj_json("isvc-legacy.yaml")
    cluster.kubectl("apply", "--server-side", "--field-manager=e2e", "-f", "-", input=yaml.safe_dump(doc))
    stored = get(cluster, "inferenceservices", "legacy")
    assert stored["spec"]["predictor"]["sklearn"]["storageUri"] == catalog.location("fraud", "2")
    commit = catalog.client.get_model_version("jukebox", "1").tags["git_commit"]
    assert stored["spec"]["transformer"]["model"]["storageUri"] == f"oci://quay.io/rhoai/jukebox:{commit}"
    # re-applying the templated manifest server-side keeps the resolution and changes nothing
    cluster.kubectl("apply", "--server-side", "--field-manager=e2e", "-f", "-", input=yaml.safe_dump(doc))
    assert (
        get(cluster, "inferenceservices", "legacy")["metadata"]["resourceVersion"]
        == stored["metadata"]["resourceVersion"]
    )


def test_server_dry_run_prints_resolved_and_stores_nothing(
    webhook: ModelpinServer, cluster: ControlPlane, catalog: Catalog
) -> None:
    doc = obj_json("isvc-canary.yaml", name="dry")
    out = cluster.kubectl("create", "--dry-run=server", "-o", "yaml", "-f", "-", input=yaml.safe_dump(doc))
    printed = yaml.safe_load(out.stdout)
    assert printed["spec"]["predictor"]["model"]["storageUri"] == catalog.location(
        "fraud", catalog.version_for("fraud", "champion")
    )
    missing = cluster.kubectl("get", "inferenceservice", "dry", "-n", NS, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_unrelated_patch_keeps_uris_and_refresh_follows_alias(
    webhook: ModelpinServer, cluster: ControlPlane, catalog: Catalog
) -> None:
    name = "e2e-moving"
    v1 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v1)
    doc = obj_json("trainedmodel.yaml", name="moving")
    doc["spec"]["model"]["storageUri"] = f"models:/{name}@champion"
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    assert get(cluster, "trainedmodels", "moving")["spec"]["model"]["storageUri"] == catalog.location(name, v1)

    cluster.kubectl(
        "patch", "trainedmodel", "moving", "-n", NS, "--type=merge", "-p", '{"spec":{"model":{"memory":"2Gi"}}}'
    )
    patched = get(cluster, "trainedmodels", "moving")
    assert patched["spec"]["model"]["memory"] == "2Gi"
    assert patched["spec"]["model"]["storageUri"] == catalog.location(name, v1)

    v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v2)
    token = str(int(time.time() * 1000))
    cluster.kubectl("annotate", "trainedmodel", "moving", "-n", NS, f"modelpin.io/refresh={token}", "--overwrite")
    moved = get(cluster, "trainedmodels", "moving")
    assert moved["spec"]["model"]["storageUri"] == catalog.location(name, v2)
    record = json.loads(moved["metadata"]["annotations"]["modelpin.io/resolved"])["/spec/model/storageUri"]
    assert record["version"] == v2


def test_unknown_model_is_refused_with_the_webhook_message(webhook: ModelpinServer, cluster: ControlPlane) -> None:
    doc = obj_json("seldon-model.yaml", name="unknown")
    doc["spec"]["storageUri"] = '{{ mlflow.blob["no-such-model@champion"] }}'
    out = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert out.returncode != 0
    assert "denied the request" in out.stderr
    assert "/spec/storageUri" in out.stderr and "no-such-model" in out.stderr


def test_guard_refuses_templates_when_the_webhook_is_down(
    webhook: ModelpinServer,
    cluster: ControlPlane,
    mlflow_server: MlflowServer,
    ca_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    doomed = ModelpinServer(tmp_path_factory.mktemp("doomed"), modelpin_config(mlflow_server.url), ca_dir)
    apply_docs(cluster, [webhook_configuration(cluster, doomed)])
    doomed.stop()
    try:
        time.sleep(2)  # let the apiserver see the new configuration
        templated = obj_json("isvc-legacy.yaml", name="while-down")
        out = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(templated), check=False)
        assert out.returncode != 0, out.stdout
        assert "modelpin" in out.stderr.lower()
        assert cluster.kubectl("get", "inferenceservice", "while-down", "-n", NS, check=False).returncode != 0
        plain = obj_json("isvc-legacy.yaml", name="plain")
        plain["spec"] = {"predictor": {"sklearn": {"storageUri": "s3://bucket/fixed/model"}}}
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(plain))
        assert (
            get(cluster, "inferenceservices", "plain")["spec"]["predictor"]["sklearn"]["storageUri"]
            == "s3://bucket/fixed/model"
        )
    finally:
        apply_docs(cluster, [webhook_configuration(cluster, webhook)])
        wait_for_webhook(cluster)


def test_every_overlay_is_accepted_by_the_apiserver(cluster: ControlPlane, tmp_path: Path) -> None:
    cluster.kubectl("apply", "-f", str(CRDS / "cert-manager"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    cluster.kubectl("create", "namespace", "modelpin-system", check=False)
    overlays = tmp_path / "manifests"
    shutil.copytree(ROOT / "manifests", overlays)
    result = cluster.kubectl("kustomize", str(overlays / "overlays" / "self-signed"), check=False)
    assert result.returncode != 0  # the generated files are not in git: users run `modelpin certs` first
    from webhook.cli import main

    assert (
        main(["certs", "--out", str(tmp_path / "certs"), "--kustomize", str(overlays / "overlays" / "self-signed")])
        == 0
    )
    for overlay in ("cert-manager", "self-signed"):
        out = cluster.kubectl("apply", "--dry-run=server", "-k", str(overlays / "overlays" / overlay), check=False)
        assert out.returncode == 0, f"{overlay}: {out.stderr}"
        assert "MutatingWebhookConfiguration" in out.stdout or "mutatingwebhookconfiguration" in out.stdout
