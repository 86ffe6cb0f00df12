"""Putting modelpin in front of the test control plane, from the project's own manifests."""

from __future__ import annotations

import base64
import copy
import json
import time
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.controlplane import ControlPlane
from tests.support.modelpin_server import ModelpinServer
from tests.support.reviews import FIXTURES
from tests.support.upstream_crds import UPSTREAM_CRDS

ROOT = Path(__file__).resolve().parents[2]
CRDS = Path(__file__).resolve().parent / "crds"
# The real CRDs (UPSTREAM_CRDS) where present; the stand-ins in CRDS otherwise.
NS = "e2e"


def base_docs(cp: ControlPlane) -> list[dict[str, Any]]:
    rendered = cp.kubectl("kustomize", str(ROOT / "manifests" / "base")).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


def webhook_configuration(cp: ControlPlane, server: ModelpinServer) -> dict[str, Any]:
    """The shipped MutatingWebhookConfiguration, pointed at a local server and its CA."""
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


def obj_json(fixture_name: str, name: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((FIXTURES / fixture_name).read_text())
    doc["metadata"]["namespace"] = NS
    if name:
        doc["metadata"]["name"] = name
    return doc


def wait_for_webhook(cp: ControlPlane) -> None:
    """The apiserver picks up webhook configurations asynchronously."""
    probe = obj_json("seldon-seed.yaml", name="probe")
    deadline = time.monotonic() + 30
    while True:
        out = cp.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(probe), check=False)
        if out.returncode == 0 and "{{" not in json.dumps(json.loads(out.stdout)["spec"]):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"webhook never answered: {out.stderr}")
        time.sleep(0.5)


def install_cluster(cp: ControlPlane) -> None:
    """Test CRDs for the four default kinds, the e2e namespace, and the shipped guard policy."""
    if UPSTREAM_CRDS.is_dir():
        # too large for client-side apply's last-applied annotation
        cp.kubectl("apply", "--server-side", "-f", str(UPSTREAM_CRDS))
    else:
        cp.kubectl("apply", "-f", str(CRDS))
    deadline = time.monotonic() + 120
    # a CRD just created may not have conditions yet, which kubectl wait reports as an error
    while cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", check=False).returncode:
        assert time.monotonic() < deadline, "CRDs never became Established"
        time.sleep(1)
    cp.kubectl("create", "namespace", NS)
    guard = [d for d in base_docs(cp) if d["kind"].startswith("ValidatingAdmissionPolicy")]
    assert {d["kind"] for d in guard} == {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    apply_docs(cp, guard)
