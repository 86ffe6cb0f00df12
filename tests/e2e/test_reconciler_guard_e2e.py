"""The reconciler can only refresh: the shipped webhook entry and policy on the real apiserver.

Requests are made as the reconciler's ServiceAccount (impersonation), against the upstream
CRDs, through the session's modelpin webhook registered with the shipped
MutatingWebhookConfiguration (two entries: everyone's, failurePolicy Ignore; the
reconciler's, failurePolicy Fail) and the shipped ValidatingAdmissionPolicies.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.cluster import NS, apply_docs, base_docs
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.modelpin_server import ModelpinServer
from webhook.tools.processes import free_port

pytestmark = pytest.mark.e2e

RECONCILER = "system:serviceaccount:modelpin-system:modelpin-reconciler"
KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


@pytest.fixture(scope="module")
def reconciler_rbac(cluster: ControlPlane, webhook: ModelpinServer) -> None:
    docs = base_docs(cluster)
    apply_docs(cluster, [d for d in docs if d["kind"] in KINDS or d["kind"].startswith("ValidatingAdmissionPolicy")])


@pytest.fixture()
def managed(cluster: ControlPlane, catalog: Catalog, reconciler_rbac: None) -> Iterator[tuple[str, str]]:
    """A managed InferenceService with a predictor image, and its model's name."""
    model = f"guard-{uuid.uuid4().hex[:8]}"
    version = catalog.new_run_version(model, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(model, "champion", version)
    name = f"guarded-{uuid.uuid4().hex[:6]}"
    obj = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"predictor": {"model": {"storageUri": f"models:/{model}@champion", "image": "serving:1"}}},
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj))
    yield name, model
    cluster.kubectl("delete", "inferenceservice", name, "-n", NS, "--wait=false", check=False)


def get(cluster: ControlPlane, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "inferenceservice", name, "-n", NS, "-o", "json")
    body: dict[str, Any] = json.loads(out.stdout)
    return body


def token() -> str:
    time.sleep(0.002)
    return str(int(time.time() * 1000))


@dataclass
class Answer:
    returncode: int
    stderr: str


def patch_as_reconciler(cluster: ControlPlane, name: str, body: dict[str, Any]) -> Answer:
    """A merge patch as the reconciler sends it (no GET first: its role has none), impersonated by the admin."""
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    context.load_cert_chain(str(cluster.admin_cert), str(cluster.admin_key))
    with httpx.Client(base_url=cluster.server, verify=context, timeout=30) as client:
        r = client.patch(
            f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/{name}",
            content=json.dumps(body),
            headers={"Content-Type": "application/merge-patch+json", "Impersonate-User": RECONCILER},
        )
    return Answer(0 if r.is_success else 1, "" if r.is_success else r.json().get("message", r.text))


def test_an_image_change_with_a_refresh_token_is_refused(cluster: ControlPlane, managed: tuple[str, str]) -> None:
    name, _ = managed
    before = get(cluster, name)
    attack = patch_as_reconciler(
        cluster,
        name,
        {
            "metadata": {"annotations": {"modelpin.io/refresh": token()}},
            "spec": {"predictor": {"model": {"image": "attacker:latest"}}},
        },
    )
    # the policy lets a refreshing request change spec; the webhook's reconciler entry refuses it
    assert attack.returncode != 0
    assert "may change only the template fields of spec" in attack.stderr, attack.stderr
    assert "/spec/predictor/model/image" in attack.stderr, attack.stderr
    after = get(cluster, name)
    assert after["spec"] == before["spec"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_refresh_alone_is_admitted_and_re_resolved(
    cluster: ControlPlane, catalog: Catalog, managed: tuple[str, str]
) -> None:
    name, model = managed
    moved = catalog.new_run_version(model, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(model, "champion", moved)
    touch = patch_as_reconciler(cluster, name, {"metadata": {"annotations": {"modelpin.io/refresh": token()}}})
    assert touch.returncode == 0, touch.stderr
    stored = get(cluster, name)
    assert stored["spec"]["predictor"]["model"]["storageUri"] == catalog.location(model, moved)
    assert stored["spec"]["predictor"]["model"]["image"] == "serving:1"


def test_the_reconciler_entry_fails_closed_and_spares_everyone_else(
    cluster: ControlPlane, managed: tuple[str, str], webhook: ModelpinServer
) -> None:
    # The shipped reconciler entry, alone in a configuration of its own, pointed at a port where
    # nothing listens: the webhook is "down" for it while the session's webhook serves the rest.
    (mwc,) = [d for d in base_docs(cluster) if d["kind"] == "MutatingWebhookConfiguration"]
    entry = copy.deepcopy(mwc["webhooks"][1])
    assert entry["failurePolicy"] == "Fail"
    entry["clientConfig"] = {
        "url": f"https://127.0.0.1:{free_port()}/mutate",
        "caBundle": base64.b64encode(webhook.ca.read_bytes()).decode(),
    }
    down = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "modelpin-reconciler-down"},
        "webhooks": [entry],
    }
    name, _ = managed
    apply_docs(cluster, [down])
    try:
        deadline = time.monotonic() + 30
        while True:  # the apiserver picks up webhook configurations asynchronously
            touch = patch_as_reconciler(cluster, name, {"metadata": {"annotations": {"modelpin.io/refresh": token()}}})
            if touch.returncode != 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert touch.returncode != 0, "the reconciler's write passed an unreachable fail-closed webhook"
        assert "modelpin-reconciler-down" in touch.stderr or "failed calling webhook" in touch.stderr, touch.stderr
        # anyone else's write is not sent to that entry
        other = cluster.kubectl("annotate", "inferenceservice", name, "-n", NS, "team=ml", "--overwrite")
        assert other.returncode == 0
    finally:
        cluster.kubectl("delete", "mutatingwebhookconfiguration", "modelpin-reconciler-down", check=False)
