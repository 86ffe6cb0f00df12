"""modelpin behind a real kube-apiserver, driven with kubectl as a user would.

The apiserver calls ``modelpin serve`` over TLS verified against the caBundle
of the project's own MutatingWebhookConfiguration (manifests/base, with the
Service reference swapped for the local URL); the project's guard policy is
installed as it ships.
"""

from __future__ import annotations

import copy
import difflib
import json
import shutil
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.cluster import CRDS, NS, ROOT, apply_docs, base_docs, obj_json, wait_for_webhook, webhook_configuration
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, modelpin_config
from tests.support.reviews import RECONCILER, at

SEED_MODEL_URIS = (
    "/spec/predictors/0/graph/modelUri",
    "/spec/predictors/0/graph/children/0/modelUri",
    "/spec/predictors/0/graph/children/0/children/0/modelUri",
    "/spec/predictors/0/graph/children/1/modelUri",
)


def get(cp: ControlPlane, resource: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(cp.kubectl("get", resource, name, "-n", NS, "-o", "json").stdout)
    return out


def modelpin_annotations(obj: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in obj["metadata"]["annotations"].items() if k.startswith("modelpin.io/")}


def touch_as_reconciler(cluster: ControlPlane, name: str) -> None:
    """The reconciler's touch of a TrainedModel: a merge patch of a new refresh token, without a GET first
    (its role has none), sent by the admin impersonating its account, whose RBAC is installed first."""
    kinds = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    apply_docs(cluster, [d for d in base_docs(cluster) if d["kind"] in kinds])
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    context.load_cert_chain(str(cluster.admin_cert), str(cluster.admin_key))
    body = {"metadata": {"annotations": {"modelpin.io/refresh": str(int(time.time() * 1000))}}}
    with httpx.Client(base_url=cluster.server, verify=context, timeout=30) as client:
        r = client.patch(
            f"/apis/serving.kserve.io/v1alpha1/namespaces/{NS}/trainedmodels/{name}",
            content=json.dumps(body),
            headers={"Content-Type": "application/merge-patch+json", "Impersonate-User": RECONCILER},
        )
    assert r.is_success, r.text


def get_with_managed_fields(cp: ControlPlane, resource: str, name: str) -> dict[str, Any]:
    """The object with metadata.managedFields (kubectl leaves them out unless asked)."""
    out = cp.kubectl("get", resource, name, "-n", NS, "-o", "json", "--show-managed-fields").stdout
    found: dict[str, Any] = json.loads(out)
    return found


def bookkeeping_aside(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without its resourceVersion and the times of its managedFields entries.

    The apiserver keeps the entries in time order, so a new time can also move an entry: they are
    compared by manager and operation.
    """
    found = copy.deepcopy(obj)
    found["metadata"].pop("resourceVersion", None)
    entries = found["metadata"].get("managedFields") or []
    for entry in entries:
        entry.pop("time", None)
    entries.sort(key=lambda e: (e.get("manager", ""), e.get("operation", ""), e.get("subresource", "")))
    return found


def changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What a write changed between two reads of an object, managedFields included: a failure says who wrote."""
    lines = [json.dumps(o, indent=1, sort_keys=True).splitlines() for o in (before, after)]
    return "\n".join(difflib.unified_diff(*lines, "before", "after", lineterm="", n=2))


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
    # kubectl's three-way merge for custom resources sends the template text again (live differs
    # from the file); the webhook resolves it to the same URI, so nothing is written.
    cluster.kubectl("apply", "-f", str(manifest))
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
    env = stored["spec"]["transformer"]["containers"][0]["env"][0]
    assert env["value"] == f"oci://quay.io/rhoai/jukebox:{commit}"
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
    # a refresh token counts only from the reconciler (reconciler_usernames): sent as its account
    touch_as_reconciler(cluster, "moving")
    moved = get(cluster, "trainedmodels", "moving")
    assert moved["spec"]["model"]["storageUri"] == catalog.location(name, v2)
    record = json.loads(moved["metadata"]["annotations"]["modelpin.io/resolved"])["/spec/model/storageUri"]
    assert record["version"] == v2


def test_a_held_object_keeps_its_version_through_a_move_and_reapplies(
    webhook: ModelpinServer, cluster: ControlPlane, catalog: Catalog, tmp_path: Path
) -> None:
    name = "e2e-held"
    v1 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v1)
    doc = obj_json("trainedmodel.yaml", name="held")
    doc["spec"]["model"]["storageUri"] = f"models:/{name}@champion"
    manifest = tmp_path / "held.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    cluster.kubectl("apply", "-f", str(manifest))
    hold: dict[str, Any] = {
        "reason": "incident",
        "until": None,
        "since": "2026-01-01T00:00:00Z",
        "by": "e2e",
        "versions": {},
    }
    cluster.kubectl("annotate", "trainedmodel", "held", "-n", NS, f"modelpin.io/hold={json.dumps(hold)}")
    held = get(cluster, "trainedmodels", "held")

    v2 = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", v2)
    touch_as_reconciler(cluster, "held")
    touched = get(cluster, "trainedmodels", "held")
    assert touched["spec"]["model"]["storageUri"] == catalog.location(name, v1)
    # re-applies from git, client- and server-side, and the diffs: the held version stays and nothing is
    # written but the apiserver's own bookkeeping. Seen in full suites: a client-side re-apply soon after
    # the reconciler's touch stores a new time on kubectl-client-side-apply's managedFields entry (a new
    # resourceVersion, the same generation, the entry moved to the end); anything more fails with the diff.
    for ssa in ((), ("--server-side", "--field-manager=e2e-held", "--force-conflicts")):
        diff = cluster.kubectl("diff", *ssa, "-f", str(manifest), check=False)
        assert diff.returncode == 0 and diff.stdout == "", diff.stdout
        for _ in range(2):
            before = get_with_managed_fields(cluster, "trainedmodels", "held")
            cluster.kubectl("apply", *ssa, "-f", str(manifest))
            again = get_with_managed_fields(cluster, "trainedmodels", "held")
            assert again["spec"] == touched["spec"]
            assert modelpin_annotations(again) == modelpin_annotations(touched)
        assert again["metadata"]["generation"] == before["metadata"]["generation"]
        assert bookkeeping_aside(again) == bookkeeping_aside(before), changes(before, again)
    history = json.loads(held["metadata"]["annotations"]["modelpin.io/history"])["/spec/model/storageUri"]
    assert [(e["version"], e["cause"]) for e in history] == [(v1, "created")]

    # released, the next touch moves it, and the history says why
    cluster.kubectl("annotate", "trainedmodel", "held", "-n", NS, "modelpin.io/hold-")
    touch_as_reconciler(cluster, "held")
    moved = get(cluster, "trainedmodels", "held")
    assert moved["spec"]["model"]["storageUri"] == catalog.location(name, v2)
    history = json.loads(moved["metadata"]["annotations"]["modelpin.io/history"])["/spec/model/storageUri"]
    assert [(e["version"], e["cause"]) for e in history] == [(v1, "created"), (v2, "released")]


def canary_only(name: str) -> dict[str, Any]:
    """An InferenceService whose one template sits in spec.canary[]."""
    doc = obj_json("isvc-legacy.yaml", name=name)
    doc["spec"] = {
        "predictor": {"sklearn": {"storageUri": "s3://bucket/fixed/model"}},
        # KServe 0.20+: a canary is {predictor, trafficPercent}
        "canary": [
            {
                "predictor": {
                    "model": {"name": "m", "modelFormat": {"name": "sklearn"}, "storageUri": "models:/fraud@champion"}
                },
                "trafficPercent": 10,
            }
        ],
    }
    return doc


def component_env_only(name: str) -> dict[str, Any]:
    """A SeldonDeployment whose one template is a container env value in componentSpecs."""
    doc = obj_json("seldon-seed.yaml", name=name)
    container = {"name": "classifier", "image": "example.com/fraud:1"}
    container["env"] = [{"name": "STORAGE_URI", "value": "models:/fraud@champion"}]
    doc["spec"] = {
        "predictors": [
            {
                "name": "default",
                "componentSpecs": [{"spec": {"containers": [container]}}],
                "graph": {"name": "classifier", "type": "MODEL"},
            }
        ]
    }
    return doc


def test_templates_in_canary_and_component_env_reach_the_webhook(
    webhook: ModelpinServer, cluster: ControlPlane, catalog: Catalog
) -> None:
    # matchConditions send the object only when a known field holds a template: these two shapes are known
    fraud = catalog.location("fraud", catalog.version_for("fraud", "champion"))
    for doc, pointer in (
        (canary_only("canary-only"), "/spec/canary/0/predictor/model/storageUri"),
        (component_env_only("env-only"), "/spec/predictors/0/componentSpecs/0/spec/containers/0/env/0/value"),
    ):
        out = cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(doc))
        printed = json.loads(out.stdout)
        assert at(printed, pointer) == fraud, doc["metadata"]["name"]
        assert pointer in json.loads(printed["metadata"]["annotations"]["modelpin.io/templates"])


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
        for templated, field in (
            (obj_json("isvc-legacy.yaml", name="while-down"), "InferenceService spec.predictor.sklearn.storageUri"),
            (canary_only("canary-while-down"), "InferenceService spec.canary[].predictor.model.storageUri"),
            (
                component_env_only("env-while-down"),
                "SeldonDeployment spec.predictors[].componentSpecs[].spec.containers[].env[].value",
            ),
        ):
            out = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(templated), check=False)
            assert out.returncode != 0, out.stdout
            # refused by the guard policy, naming the field: not by a failed webhook call
            assert "ValidatingAdmissionPolicy 'modelpin-unresolved-templates'" in out.stderr, out.stderr
            assert f"{field} holds an unresolved model registry template" in out.stderr, out.stderr
            resource = templated["kind"].lower()
            name = templated["metadata"]["name"]
            assert cluster.kubectl("get", resource, name, "-n", NS, check=False).returncode != 0
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
