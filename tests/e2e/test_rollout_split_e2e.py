"""The rollout's traffic split as the apiserver stores it, written by the webhook from the state annotation.

A real kube-apiserver with the upstream CRDs (so the schema prunes whatever it does not
declare), the session's webhook and a real MLflow server. The state annotation is written
as the reconciler writes it: an impersonated merge patch as its ServiceAccount, with a
refresh token, through the shipped ValidatingAdmissionPolicy.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.cluster import NS, apply_docs, base_docs
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.modelpin_server import ModelpinServer

pytestmark = pytest.mark.e2e

RECONCILER = "system:serviceaccount:modelpin-system:modelpin-reconciler"
RBAC = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
POLICY = "steps: [10, 50]\nstep_seconds: 60\n"
SSA = ("--server-side", "--field-manager=gitops", "--force-conflicts")


@dataclass(frozen=True)
class Kind:
    resource: str  # kubectl's name
    path: str  # the REST collection in namespace NS
    pointer: str  # the template field

    def manifest(self, name: str, model: str) -> dict[str, Any]:
        template = f"models:/{model}@champion"
        metadata = {"name": name, "namespace": NS, "annotations": {"modelpin.io/rollout-policy": POLICY}}
        if self.resource == "inferenceservice":
            spec: dict[str, Any] = {
                "predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": template}},
            }
            return {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": metadata,
                "spec": spec,
            }
        spec = {"predictors": [{"name": "default", "replicas": 1, "graph": {"name": "clf", "modelUri": template}}]}
        return {
            "apiVersion": "machinelearning.seldon.io/v1",
            "kind": "SeldonDeployment",
            "metadata": metadata,
            "spec": spec,
        }


KSERVE = Kind(
    "inferenceservice",
    f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices",
    "/spec/predictor/model/storageUri",
)
SELDON = Kind(
    "seldondeployment",
    f"/apis/machinelearning.seldon.io/v1/namespaces/{NS}/seldondeployments",
    "/spec/predictors/0/graph/modelUri",
)


@pytest.fixture(scope="module")
def reconciler_rbac(cluster: ControlPlane, webhook: ModelpinServer) -> None:
    docs = base_docs(cluster)
    apply_docs(cluster, [d for d in docs if d["kind"] in RBAC or d["kind"].startswith("ValidatingAdmissionPolicy")])


@dataclass
class Subject:
    cluster: ControlPlane
    catalog: Catalog
    kind: Kind
    name: str
    model: str
    manifest: Path

    def get(self) -> dict[str, Any]:
        out = self.cluster.kubectl("get", self.kind.resource, self.name, "-n", NS, "-o", "json")
        body: dict[str, Any] = json.loads(out.stdout)
        return body

    def version(self) -> str:
        version = self.catalog.new_run_version(self.model, experiment=self.catalog.s3_experiment)
        self.catalog.client.set_registered_model_alias(self.model, "champion", version)
        return version

    def record(self, version: str) -> dict[str, str]:
        stored = json.loads(self.get()["metadata"]["annotations"]["modelpin.io/resolved"])[self.kind.pointer]
        uri = self.catalog.location(self.model, version)
        return {
            **stored,
            "version": version,
            "uri": uri,
            "run_id": self.catalog.client.get_model_version(self.model, version).run_id,
        }

    def as_reconciler(self, annotations: dict[str, str]) -> httpx.Response:
        """A merge patch of annotations with a refresh token, as the reconciler sends it."""
        time.sleep(0.002)
        body = {"metadata": {"annotations": {**annotations, "modelpin.io/refresh": str(int(time.time() * 1000))}}}
        context = ssl.create_default_context(cafile=str(self.cluster.ca_file))
        context.load_cert_chain(str(self.cluster.admin_cert), str(self.cluster.admin_key))
        with httpx.Client(base_url=self.cluster.server, verify=context, timeout=30) as client:
            return client.patch(
                f"{self.kind.path}/{self.name}",
                content=json.dumps(body),
                headers={"Content-Type": "application/merge-patch+json", "Impersonate-User": RECONCILER},
            )

    def state(self, phase: str, percent: int, old: dict[str, str], new: dict[str, str]) -> None:
        state = {
            "phase": phase,
            "step": 0 if percent <= 10 else 1,
            "percent": percent,
            "from": {self.kind.pointer: old},
            "to": {self.kind.pointer: new},
            "started": "2026-01-02T03:04:05Z",
            "step_started": "2026-01-02T03:04:05Z",
        }
        answer = self.as_reconciler({"modelpin.io/rollout": json.dumps(state)})
        assert answer.is_success, answer.text

    def reapply_changes_nothing(self) -> None:
        before = self.get()
        self.cluster.kubectl("apply", *SSA, "-f", str(self.manifest))
        after = self.get()
        assert after["spec"] == before["spec"]
        assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        diff = self.cluster.kubectl("diff", *SSA, "-f", str(self.manifest), check=False)
        assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr


@pytest.fixture(params=[KSERVE, SELDON], ids=["InferenceService", "SeldonDeployment"])
def subject(
    request: pytest.FixtureRequest,
    cluster: ControlPlane,
    catalog: Catalog,
    reconciler_rbac: None,
    tmp_path: Path,
) -> Iterator[Subject]:
    kind: Kind = request.param
    model = f"split-{uuid.uuid4().hex[:8]}"
    name = f"split-{uuid.uuid4().hex[:6]}"
    manifest = tmp_path / "git.yaml"
    manifest.write_text(yaml.safe_dump(kind.manifest(name, model)))
    s = Subject(cluster, catalog, kind, name, model, manifest)
    s.version()
    cluster.kubectl("apply", *SSA, "-f", str(manifest))
    yield s
    cluster.kubectl("delete", kind.resource, name, "-n", NS, "--wait=false", check=False)


def sides(subject: Subject) -> list[tuple[str, int | None]]:
    """(URI, share) of each side as stored: stable first."""
    spec = subject.get()["spec"]
    if subject.kind is KSERVE:
        stable = [(spec["predictor"]["model"]["storageUri"], None)]
        return stable + [(e["predictor"]["model"]["storageUri"], e["trafficPercent"]) for e in spec.get("canary", [])]
    return [(p["graph"]["modelUri"], p.get("traffic")) for p in spec["predictors"]]


def test_the_split_follows_the_state_and_survives_reapplies(subject: Subject) -> None:
    s = subject
    v1 = s.catalog.version_for(s.model, "champion")
    old = s.record(v1)
    assert sides(s) == [(old["uri"], None)]
    v2 = s.version()
    new = s.record(v2)
    assert new["uri"] != old["uri"]

    s.state("progressing", 10, old, new)
    stored = s.get()
    if s.kind is KSERVE:
        assert sides(s) == [(old["uri"], None), (new["uri"], 10)]
        canary = stored["spec"]["canary"][0]["predictor"]
        assert canary["annotations"] == {"modelpin.io/canary": "true"}  # kept by the schema, not pruned
        assert canary["model"]["modelFormat"] == {"name": "sklearn"}
    else:
        assert sides(s) == [(old["uri"], 90), (new["uri"], 10)]
        names = [p["name"] for p in stored["spec"]["predictors"]]
        assert names == ["default", "default-canary"]
        assert "modelpin.io/canary" in stored["spec"]["predictors"][1]["annotations"]
    # the records keep naming the stable version while the split runs
    assert json.loads(stored["metadata"]["annotations"]["modelpin.io/resolved"])[s.kind.pointer]["version"] == v1
    s.reapply_changes_nothing()

    s.state("progressing", 50, old, new)
    assert sides(s) == (
        [(old["uri"], None), (new["uri"], 50)] if s.kind is KSERVE else [(old["uri"], 50), (new["uri"], 50)]
    )
    s.reapply_changes_nothing()

    s.state("promoted", 100, old, new)
    assert sides(s) == [(new["uri"], None)]
    history = json.loads(s.get()["metadata"]["annotations"]["modelpin.io/history"])[s.kind.pointer]
    assert [(e["version"], e["cause"]) for e in history] == [(v1, "created"), (v2, "moved")]
    s.reapply_changes_nothing()


def test_a_rollback_under_its_hold_runs_the_old_version(subject: Subject) -> None:
    s = subject
    old = s.record(s.catalog.version_for(s.model, "champion"))
    v2 = s.version()
    new = s.record(v2)
    s.state("progressing", 10, old, new)
    assert len(sides(s)) == 2
    hold = {
        "reason": f"rollout of version {v2} rolled-back: analysis failed",
        "since": "2026-01-02T03:04:05Z",
        "until": None,
        "by": RECONCILER,
        "versions": {s.kind.pointer: old["version"]},
    }
    state = json.loads(s.get()["metadata"]["annotations"]["modelpin.io/rollout"])
    state |= {"phase": "rolled-back", "percent": 0}
    # the reconciler writes the state and the hold in one request; its policy allows both
    answer = s.as_reconciler({"modelpin.io/rollout": json.dumps(state), "modelpin.io/hold": json.dumps(hold)})
    assert answer.is_success, answer.text
    assert sides(s) == [(old["uri"], None)]
    s.reapply_changes_nothing()


def test_the_reconciler_may_not_write_other_annotations(subject: Subject) -> None:
    answer = subject.as_reconciler({"modelpin.io/paused": "true"})
    assert answer.status_code in (403, 422), answer.text
    assert "may change no annotation but modelpin.io/refresh" in answer.text
