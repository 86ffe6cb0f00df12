"""Progressive rollouts end to end: an alias move stepped through a canary, judged by a real Prometheus.

A real kube-apiserver with the upstream CRDs, a real MLflow server, the session's
``modelpin serve`` (the only writer of spec: it writes the split from the state)
and ``modelpin reconcile`` as a separate process running as the reconciler's
ServiceAccount (the only writer of the state), and a real Prometheus scraping an
exporter whose error ratio per model version the test sets. Each object carries
its policy in ``modelpin.io/rollout-policy``. No Knative or Istio runs here: the
split is checked as the apiserver stores it, not as traffic.

``-s`` prints what was observed and when.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge

from tests.e2e.cluster import NS
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.cli import modelpin
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer
from tests.support.prometheus import Prometheus, serve_metrics
from tests.support.reconciler_process import Reconciler, account_kubeconfig

pytestmark = pytest.mark.e2e

STEP_SECONDS = 3
SSA = ("--server-side", "--field-manager=gitops", "--force-conflicts")
ERROR_RATIO = 'max(modelpin_test_error_ratio{namespace="{{namespace}}",model="{{model}}",model_version="{{version}}"})'


@dataclass
class Observed:
    """Each distinct split the apiserver stored, with when it was first seen."""

    seen: list[tuple[float, Any]] = field(default_factory=list)

    def add(self, split: Any) -> None:
        if not self.seen or self.seen[-1][1] != split:
            self.seen.append((time.monotonic(), split))


@dataclass(frozen=True)
class Kind:
    resource: str
    pointer: str

    def manifest(self, name: str, model: str, policy: dict[str, Any]) -> dict[str, Any]:
        template = f"models:/{model}@champion"
        metadata = {"name": name, "namespace": NS, "annotations": {"modelpin.io/rollout-policy": json.dumps(policy)}}
        if self.resource == "inferenceservice":
            return {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": metadata,
                "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": template}}},
            }
        return {
            "apiVersion": "machinelearning.seldon.io/v1",
            "kind": "SeldonDeployment",
            "metadata": metadata,
            "spec": {
                "predictors": [{"name": "default", "replicas": 1, "graph": {"name": "clf", "modelUri": template}}]
            },
        }


KSERVE = Kind("inferenceservice", "/spec/predictor/model/storageUri")
SELDON = Kind("seldondeployment", "/spec/predictors/0/graph/modelUri")


@dataclass(frozen=True)
class Exporter:
    """The model's error ratio, per namespace, model and version, and the scrape target serving it."""

    ratio: Gauge
    target: str


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    registry = CollectorRegistry()
    ratio = Gauge(
        "modelpin_test_error_ratio", "Errors per request", ["namespace", "model", "model_version"], registry=registry
    )
    with serve_metrics(registry) as target:
        yield Exporter(ratio, target)


@pytest.fixture(scope="module")
def prometheus(exporter: Exporter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with Prometheus(tmp_path_factory.mktemp("prometheus"), [exporter.target], lookback_seconds=3) as server:
        yield server.url


@dataclass
class Env:
    cluster: ControlPlane
    catalog: Catalog
    exporter: Exporter
    prometheus: str
    config: Path

    def policy(self, *, analysed: bool = True, step_seconds: int = STEP_SECONDS) -> dict[str, Any]:
        rollout: dict[str, Any] = {"steps": [10, 50], "step_seconds": step_seconds}
        if analysed:
            rollout["analysis"] = {
                "prometheus": self.prometheus,
                "timeout_seconds": 2,
                "queries": [{"name": "error-rate", "query": ERROR_RATIO, "max": 0.01}],
            }
        return {"rollout": rollout}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return modelpin(*args, "--kubeconfig", str(self.cluster.kubeconfig))


@pytest.fixture(scope="module")
def env(
    webhook: ModelpinServer,
    cluster: ControlPlane,
    catalog: Catalog,
    mlflow_server: MlflowServer,
    ca_dir: Path,
    reconciler_account: str,
    exporter: Exporter,
    prometheus: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("progressive")
    rec = Reconciler(
        work / "reconciler",
        cluster,
        mlflow_server.url,
        ca_dir,
        lease="progressive-rollout",
        poll=2,
        identity="progressive-reconciler",
        kubeconfig=account_kubeconfig(cluster, work / "reconciler.kubeconfig"),
    )
    try:
        yield Env(cluster, catalog, exporter, prometheus, rec.config_path)
    finally:
        rec.stop()
        print(f"\nreconciler log: {work / 'reconciler' / 'reconciler.log'}")


@dataclass
class Subject:
    env: Env
    kind: Kind
    name: str
    model: str
    manifest: Path

    def get(self) -> dict[str, Any]:
        out = self.env.cluster.kubectl("get", self.kind.resource, self.name, "-n", NS, "-o", "json")
        body: dict[str, Any] = json.loads(out.stdout)
        return body

    def annotations(self) -> dict[str, str]:
        found: dict[str, str] = self.get()["metadata"].get("annotations") or {}
        return found

    def version(self, error_ratio: float) -> str:
        """A new version, its error ratio exported; the alias is not moved."""
        version = self.env.catalog.new_run_version(self.model, experiment=self.env.catalog.s3_experiment)
        self.env.exporter.ratio.labels(NS, self.model, version).set(error_ratio)
        return version

    def move(self, version: str) -> None:
        self.env.catalog.client.set_registered_model_alias(self.model, "champion", version)

    def uri(self, version: str) -> str:
        return self.env.catalog.location(self.model, version)

    def sides(self) -> list[tuple[str, int | None]]:
        """(URI, share) of each side as stored, stable first."""
        spec = self.get()["spec"]
        if self.kind is KSERVE:
            stable = [(spec["predictor"]["model"]["storageUri"], None)]
            return stable + [
                (e["predictor"]["model"]["storageUri"], e["trafficPercent"]) for e in spec.get("canary", [])
            ]
        return [(p["graph"]["modelUri"], p.get("traffic")) for p in spec["predictors"]]

    def state(self) -> dict[str, Any] | None:
        raw = self.annotations().get("modelpin.io/rollout")
        return json.loads(raw) if raw else None

    def follow(
        self, until: Callable[[list[tuple[str, int | None]]], bool], timeout: float, seen: Observed | None = None
    ) -> Observed:
        """Watch the stored split (every 0.2 s) until ``until`` holds for it; ``seen`` goes on from earlier."""
        seen = seen if seen is not None else Observed()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            split = self.sides()
            seen.add(split)
            if until(split):
                return seen
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: not reached within {timeout}s; seen {seen.seen}")

    def events(self) -> list[tuple[str, str, str]]:
        out = self.env.cluster.kubectl(
            "get", "events", "-n", NS, "--field-selector", f"involvedObject.name={self.name}", "-o", "json"
        )
        # in the order written: timestamps have whole seconds, and several steps' Events can share one
        items = sorted(json.loads(out.stdout)["items"], key=lambda e: int(e["metadata"]["resourceVersion"]))
        return [(e["type"], e["reason"], e["message"]) for e in items if e["reason"].startswith("Rollout")]

    def status(self) -> dict[str, Any]:
        done = self.env.run("status", "-n", NS, "-o", "json", "--model", self.model, "--config", str(self.env.config))
        assert done.returncode == 0 and done.stdout.startswith("{"), done.stderr
        (row,) = [r for r in json.loads(done.stdout)["objects"] if r["name"] == self.name]
        return dict(row)

    def reapply_changes_nothing(self) -> None:
        before = self.get()
        self.env.cluster.kubectl("apply", *SSA, "-f", str(self.manifest))
        after = self.get()
        assert after["spec"] == before["spec"]
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        diff = self.env.cluster.kubectl("diff", *SSA, "-f", str(self.manifest), check=False)
        assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr


def subject(env: Env, kind: Kind, tmp_path: Path, policy: dict[str, Any]) -> Subject:
    model = f"prog-{uuid.uuid4().hex[:8]}"
    name = f"prog-{uuid.uuid4().hex[:6]}"
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump(kind.manifest(name, model, policy)))
    s = Subject(env, kind, name, model, manifest)
    s.move(s.version(0.0))
    env.cluster.kubectl("apply", *SSA, "-f", str(manifest))
    return s


def stable_and_canary(s: Subject, old: str, new: str, percent: int) -> list[tuple[str, int | None]]:
    if s.kind is KSERVE:
        return [(s.uri(old), None), (s.uri(new), percent)]
    return [(s.uri(old), 100 - percent), (s.uri(new), percent)]


KINDS = pytest.mark.parametrize("kind", [KSERVE, SELDON], ids=["InferenceService", "SeldonDeployment"])


@KINDS
def test_passing_analysis_steps_through_the_canary_to_promotion(env: Env, kind: Kind, tmp_path: Path) -> None:
    s = subject(env, kind, tmp_path, env.policy())
    v1 = env.catalog.version_for(s.model, "champion")
    assert s.sides() == [(s.uri(v1), None)]
    v2 = s.version(0.001)
    moved = time.monotonic()
    s.move(v2)

    at10 = stable_and_canary(s, v1, v2, 10)
    at50 = stable_and_canary(s, v1, v2, 50)
    seen = s.follow(lambda split: split == at10, 15)
    seen.seen = seen.seen[-1:]  # from the first sight of the canary
    row = s.status()
    print(f"\n{kind.resource} {s.name}: at 10 % {seen.seen[-1][0] - moved:.1f}s after the alias move; status {row}")
    assert (row["state"], row["percent"], row["running_version"], row["registry_version"]) == (
        "rolling-out",
        10,
        v1,
        v2,
    )
    seen = s.follow(lambda split: split == [(s.uri(v2), None)], 6 * STEP_SECONDS + 10, seen)
    splits = [split for _, split in seen.seen]
    assert splits[0] == at10 and at50 in splits and splits[-1] == [(s.uri(v2), None)]
    assert splits == [at10, at50, [(s.uri(v2), None)]], splits  # nothing else in between
    held = [later - earlier for (earlier, _), (later, _) in zip(seen.seen, seen.seen[1:], strict=False)]
    print(f"steps held {', '.join(f'{h:.1f}s' for h in held)} (policy: {STEP_SECONDS}s, observed every 0.2s)")
    assert all(h >= STEP_SECONDS - 0.25 for h in held), held

    state = s.state()
    assert state is not None and state["phase"] == "promoted"
    assert s.status()["state"] == "current"
    reasons = [reason for _, reason, _ in s.events()]
    assert reasons == ["RolloutStarted", "RolloutStepped", "RolloutPromoted"], s.events()
    history = json.loads(s.annotations()["modelpin.io/history"])[kind.pointer]
    assert [(e["version"], e["cause"]) for e in history] == [(v1, "created"), (v2, "moved")]
    done = env.run("history", f"{kind.resource}/{s.name}", "-n", NS)
    print(done.stdout)
    for type_, reason, message in s.events():
        print(f"{type_:8} {reason:18} {message}")


@KINDS
def test_failing_analysis_rolls_back_and_holds_the_old_version(env: Env, kind: Kind, tmp_path: Path) -> None:
    s = subject(env, kind, tmp_path, env.policy())
    v1 = env.catalog.version_for(s.model, "champion")
    v2 = s.version(0.2)
    s.move(v2)
    seen = s.follow(lambda split: split == stable_and_canary(s, v1, v2, 10), 15)
    seen.seen = seen.seen[-1:]  # from the first sight of the canary
    seen = s.follow(lambda split: split == [(s.uri(v1), None)], 3 * STEP_SECONDS + 10, seen)
    assert seen.seen[-1][0] - seen.seen[0][0] >= STEP_SECONDS - 0.25

    state = s.state()
    assert state is not None and state["phase"] == "rolled-back"
    assert state["reason"] == "analysis failed: error-rate 0.2 > 0.01 at 10 %"
    hold = json.loads(s.annotations()["modelpin.io/hold"])
    assert hold["versions"] == {kind.pointer: v1} and "error-rate 0.2 > 0.01 at 10 %" in hold["reason"]
    row = s.status()
    print(f"\n{kind.resource} {s.name}: status {row}")
    assert (row["state"], row["running_version"], row["registry_version"]) == ("rolled-back", v1, v2)
    (rolled_back,) = [e for e in s.events() if e[1] == "RolloutRolledBack"]
    assert rolled_back[0] == "Warning" and "error-rate 0.2 > 0.01 at 10 %" in rolled_back[2]
    # the alias still names v2: the hold keeps v1 through the next polls
    time.sleep(3)
    assert s.sides() == [(s.uri(v1), None)]


@KINDS
def test_a_reapply_from_git_mid_rollout_changes_nothing_and_operators_decide(
    env: Env, kind: Kind, tmp_path: Path
) -> None:
    s = subject(env, kind, tmp_path, env.policy(analysed=False, step_seconds=3600))
    v1 = env.catalog.version_for(s.model, "champion")
    v2 = s.version(0.0)
    s.move(v2)
    s.follow(lambda split: split == stable_and_canary(s, v1, v2, 10), 15)
    s.reapply_changes_nothing()

    refused = env.run("rollout", "resume", f"{kind.resource}/{s.name}", "-n", NS)
    assert refused.returncode == 1 and "cannot resume: the rollout is progressing" in refused.stderr
    paused = env.run("rollout", "pause", f"{kind.resource}/{s.name}", "-n", NS)
    assert paused.returncode == 0, paused.stderr
    print(f"\n$ modelpin rollout pause {kind.resource}/{s.name}\n{paused.stdout}")
    assert "paused at 10 %" in paused.stdout and s.sides() == stable_and_canary(s, v1, v2, 10)
    s.reapply_changes_nothing()

    promoted = env.run("rollout", "promote", f"{kind.resource}/{s.name}", "-n", NS)
    assert promoted.returncode == 0, promoted.stderr
    print(f"$ modelpin rollout promote {kind.resource}/{s.name}\n{promoted.stdout}")
    s.follow(lambda split: split == [(s.uri(v2), None)], 10)
    assert s.state()["phase"] == "promoted"  # type: ignore[index]

    # the next move, aborted by hand: back to the promoted version, held there
    v3 = s.version(0.0)
    s.move(v3)
    s.follow(lambda split: split == stable_and_canary(s, v2, v3, 10), 15)
    aborted = env.run("rollout", "abort", f"{kind.resource}/{s.name}", "-n", NS)
    assert aborted.returncode == 0, aborted.stderr
    print(f"$ modelpin rollout abort {kind.resource}/{s.name}\n{aborted.stdout}")
    s.follow(lambda split: split == [(s.uri(v2), None)], 10)
    hold = json.loads(s.annotations()["modelpin.io/hold"])
    assert hold["versions"] == {kind.pointer: v2}
    assert [r for _, r, _ in s.events()][-1] == "RolloutAborted"
    s.reapply_changes_nothing()
