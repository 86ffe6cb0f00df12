"""Rollout control end to end: status, holds, expiry, gates and history with the webhook and the reconciler.

A real kube-apiserver with the upstream CRDs, a real MLflow server delivering
webhooks, ``modelpin serve`` and ``modelpin reconcile`` as separate processes, the
reconciler as its own ServiceAccount, and the operator's commands run as a user
would. The steps share one model and build on each other, in file order:

a. the reconciler stopped, the alias moves: status shows who is behind; started,
   it moves them, and its state gauges agree with status;
b. ``hold --previous`` rolls one object back, and it stays there through an alias
   move and client- and server-side re-applies from git, until released;
c. ``hold --for 20s`` ends on its own: the object moves and an Event says so;
d. ``production`` requires ``validation_status=passed``: a move to an untagged
   version waits (one Warning each), a new object naming the alias is denied, and
   setting the tag moves them (the time from tag set to moved is printed);
e. ``modelpin history`` shows each change with its cause.

``-s`` shows the status output and the figures.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.cluster import apply_docs, wait_for_webhook, webhook_configuration
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.cli import modelpin
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, modelpin_config
from tests.support.reconciler_process import SECRET, Reconciler, account_kubeconfig, reconciler_section
from webhook.reconcile.deliveries import EVENTS

PROD = "production"
OTHER = "rollout-other"
FIELD = "/spec/predictor/model/storageUri"
GATE = {"validation_status": "passed"}
POLL = 5.0  # the reconciler's poll interval: long enough that a move in under 2 s is a delivery's doing


def isvc(name: str, namespace: str, uri: str, **annotations: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta,
        "spec": {"predictor": {"model": {"storageUri": uri}}},
    }


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(every)
    raise AssertionError(f"{what} not seen within {timeout}s")


class Rollout:
    """The module's model, objects, configuration and the operator's commands."""

    def __init__(self, cluster: ControlPlane, catalog: Catalog, config: Path, workdir: Path) -> None:
        self.cluster = cluster
        self.catalog = catalog
        self.config = config
        self.workdir = workdir
        self.model = f"iris{uuid.uuid4().hex[:6]}"
        self.following = ["a", "b", "c"]  # in production, following @champion
        self.manifests: dict[str, Path] = {}
        self.reconciler: Reconciler | None = None
        self.hook_id: str | None = None

    def version(self, tags: dict[str, str] | None = None) -> str:
        return self.catalog.new_run_version(self.model, experiment=self.catalog.s3_experiment, tags=tags)

    def move(self, version: str) -> None:
        self.catalog.client.set_registered_model_alias(self.model, "champion", version)

    def at(self, name: str, namespace: str = PROD) -> str:
        """The version recorded for the object's field."""
        out = self.cluster.kubectl("get", "isvc", name, "-n", namespace, "-o", "json").stdout
        meta = json.loads(out)["metadata"]
        resolved = json.loads(meta["annotations"]["modelpin.io/resolved"])
        uri = json.loads(out)["spec"]["predictor"]["model"]["storageUri"]
        assert resolved[FIELD]["uri"] == uri
        return str(resolved[FIELD]["version"])

    def all_at(self, names: list[str], version: str) -> bool:
        return all(self.at(n) == version for n in names)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return modelpin(*args, "--kubeconfig", str(self.cluster.kubeconfig))

    def status(self) -> dict[str, Any]:
        done = self.run("status", "-A", "-o", "json", "--config", str(self.config))
        assert done.returncode in (0, 1) and done.stdout.startswith("{"), done.stderr
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    def rows(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in self.status()["objects"] if r["model"] == self.model}

    def events(self, namespace: str, reason: str) -> list[dict[str, Any]]:
        out = self.cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector", f"reason={reason}", "-o", "json"
        )
        return [e for e in json.loads(out.stdout)["items"] if self.model in e["message"]]

    def start_reconciler(self, config: dict[str, Any], ca_dir: Path, name: str) -> Reconciler:
        """``modelpin reconcile`` as the reconciler's ServiceAccount, with the gated configuration; leading."""
        kubeconfig = account_kubeconfig(self.cluster, self.workdir / f"{name}.kubeconfig")
        rc = config["reconciler"]
        self.reconciler = Reconciler(
            self.workdir / name,
            self.cluster,
            config["registries"]["mlflow"]["tracking_uri"],
            ca_dir,
            lease=rc["lease_name"],
            poll=rc["poll_interval_seconds"],
            identity=name,
            kubeconfig=kubeconfig,
            overrides=config,
        )
        self.reconciler.wait_leading(60)
        return self.reconciler


def gated_config(tracking_uri: str) -> dict[str, Any]:
    namespaces = {**modelpin_config(tracking_uri)["namespaces"], PROD: {"require_tags": GATE}}
    # A floating reference's answer is cached for floating_ttl_seconds (30 s in the shared test config): a new
    # object naming the alias within that time of a move gets the version before it. Kept short here, so the
    # gate step sees the webhook's answer for the version the alias names now.
    cache = {"pinned_ttl_seconds": 3600, "floating_ttl_seconds": 2, "max_stale_seconds": 600}
    config = modelpin_config(tracking_uri, namespaces=namespaces, cache=cache)
    config["reconciler"] = reconciler_section("rollout-control", POLL)
    return config


@pytest.fixture(scope="module")
def rollout(
    webhook: ModelpinServer,
    cluster: ControlPlane,
    catalog: Catalog,
    mlflow_server: MlflowServer,
    ca_dir: Path,
    reconciler_account: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Rollout]:
    """A webhook with production's gate in front of the apiserver for this module; the session's afterwards."""
    work = tmp_path_factory.mktemp("rollout")
    config = gated_config(mlflow_server.url)
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    assert cluster.webhook_client is not None
    server = ModelpinServer(
        work / "webhook", config, ca_dir, extra_args=["--client-ca", str(cluster.webhook_client.ca)]
    )
    apply_docs(cluster, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in (PROD, OTHER)])
    apply_docs(cluster, [webhook_configuration(cluster, server)])
    wait_for_webhook(cluster)
    found = Rollout(cluster, catalog, work / "config.yaml", work)
    try:
        yield found
    finally:
        if found.reconciler is not None:
            found.reconciler.stop()
        if found.hook_id is not None:
            catalog.client.delete_webhook(found.hook_id)
        apply_docs(cluster, [webhook_configuration(cluster, webhook)])
        wait_for_webhook(cluster)
        server.stop()


@pytest.fixture(scope="module")
def config(mlflow_server: MlflowServer) -> dict[str, Any]:
    return gated_config(mlflow_server.url)


def test_a_status_and_the_reconciler(rollout: Rollout, config: dict[str, Any], ca_dir: Path) -> None:
    r = rollout
    v1 = r.version(GATE)
    r.move(v1)
    docs = {n: isvc(n, PROD, f"models:/{r.model}@champion") for n in r.following}
    docs["pinned"] = isvc("pinned", OTHER, f"models:/{r.model}/1")
    docs["paused"] = isvc("paused", OTHER, f"models:/{r.model}@champion", **{"modelpin.io/paused": "true"})
    for name, doc in docs.items():
        path = r.manifests[name] = r.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        r.cluster.kubectl("apply", "-f", str(path))
    assert r.all_at(r.following, v1)

    # the reconciler is not running: the move leaves them behind
    v2 = r.version(GATE)
    r.move(v2)
    status = r.status()
    rows = {n: row for n, row in ((row["name"], row) for row in status["objects"]) if row["model"] == r.model}
    print(f"\n$ modelpin status -o json -A   (this module's model, {r.model})")
    print(json.dumps({"objects": list(rows.values()), "summary": status["summary"]}, indent=2))
    assert {n: row["state"] for n, row in rows.items()} == {
        "a": "behind",
        "b": "behind",
        "c": "behind",
        "pinned": "pinned",
        "paused": "paused",
    }
    assert all((rows[n]["running_version"], rows[n]["registry_version"]) == (v1, v2) for n in r.following)

    started = time.monotonic()
    rec = r.start_reconciler(config, ca_dir, "reconciler-1")
    took = wait_for(lambda: r.all_at(r.following, v2), POLL, "the three moved by the reconciler")
    print(f"reconciler start to synced: {time.monotonic() - started - took:.1f}s; then moved in {took:.2f}s")
    assert r.at("paused", OTHER) == v1 and r.at("pinned", OTHER) == v1
    rows = r.rows()
    assert {n: rows[n]["state"] for n in rows} == {
        "a": "current",
        "b": "current",
        "c": "current",
        "pinned": "pinned",
        "paused": "paused",
    }

    def gauges_agree() -> bool:
        found = rec.metrics()
        summary = r.status()["summary"]
        states = {
            dict(labels)["state"]: int(v) for (name, labels), v in found.items() if name == "modelpin_objects" and v
        }
        running = {
            dict(labels)["version"]: int(v)
            for (name, labels), v in found.items()
            if name == "modelpin_model_versions_running" and dict(labels)["model"] == r.model
        }
        return states == summary and running == {v1: 2, v2: 3}

    wait_for(gauges_agree, 3 * POLL, "the state gauges agreeing with status", every=0.5)
    print(f"state gauges: {r.status()['summary']}")


def test_b_rollback_hold_survives_moves_and_reapplies(rollout: Rollout) -> None:
    r = rollout
    held = r.run("hold", "isvc/a", "-n", PROD, "--reason", "bad canary", "--previous")
    assert held.returncode == 0, held.stderr
    assert r.at("a") == "1"
    v3 = r.version(GATE)
    r.move(v3)
    wait_for(lambda: r.all_at(["b", "c"], v3), 2 * POLL + 5, "b and c moved to 3")
    before = json.loads(r.cluster.kubectl("get", "isvc", "a", "-n", PROD, "-o", "json").stdout)["metadata"]
    time.sleep(POLL + 1)  # a poll in between: the held object is not touched
    after = json.loads(r.cluster.kubectl("get", "isvc", "a", "-n", PROD, "-o", "json").stdout)["metadata"]
    assert after["resourceVersion"] == before["resourceVersion"] and r.at("a") == "1"

    path = str(r.manifests["a"])
    r.cluster.kubectl("apply", "-f", path)
    assert r.at("a") == "1"
    diff = r.cluster.kubectl("diff", "-f", path, check=False)
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr
    ssa = ("--server-side", "--field-manager=gitops")
    r.cluster.kubectl("apply", *ssa, "--force-conflicts", "-f", path)
    assert r.at("a") == "1"
    diff = r.cluster.kubectl("diff", *ssa, "--force-conflicts", "-f", path, check=False)
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr

    released = r.run("release", "isvc/a", "-n", PROD)
    assert released.returncode == 0, released.stderr
    assert r.at("a") == v3


def test_c_a_hold_for_a_while_ends_on_its_own(rollout: Rollout) -> None:
    r = rollout
    held = r.run("hold", "isvc/b", "-n", PROD, "--reason", "load test", "--for", "20s")
    assert held.returncode == 0, held.stderr
    meta = json.loads(r.cluster.kubectl("get", "isvc", "b", "-n", PROD, "-o", "json").stdout)["metadata"]
    hold = meta["annotations"]["modelpin.io/hold"]
    ends = dt.datetime.fromisoformat(json.loads(hold)["until"]).timestamp()
    v3 = r.at("b")
    v4 = r.version(GATE)
    r.move(v4)
    wait_for(lambda: r.all_at(["a", "c"], v4), 2 * POLL + 5, "a and c moved to 4")
    assert r.at("b") == v3
    wait_for(lambda: r.at("b") == v4, 40, "b moved once its hold ended", every=0.2)
    moved_after = time.time() - ends
    print(f"hold {hold}: b moved {moved_after:.1f}s after its expiry")
    assert 0 <= moved_after < 5
    (event,) = r.events(PROD, "HoldExpired")
    assert event["involvedObject"]["name"] == "b" and event["type"] == "Normal"
    assert event["message"] == f"hold expired (reason: load test); moving {r.model} {v3} -> {v4}"


def test_d_a_gate_holds_moves_until_the_tag_is_set(rollout: Rollout, config: dict[str, Any]) -> None:
    r = rollout
    assert r.reconciler is not None
    hook = r.catalog.client.create_webhook(
        name=f"modelpin-{r.model}",
        url=f"{r.reconciler.url}/mlflow/events",
        events=list(EVENTS),  # type: ignore[arg-type]  # mlflow types events as literals
        secret=SECRET,
    )
    r.hook_id = hook.webhook_id
    time.sleep(2)  # the mlflow server's webhook list cache (1 s in tests)
    v4 = r.at("a")
    v5 = r.version()  # untagged
    r.move(v5)

    def warned() -> list[dict[str, Any]]:
        return r.events(PROD, "ModelVersionGated")

    wait_for(lambda: len(warned()) == 3, 2 * POLL + 5, "three ModelVersionGated warnings", every=0.3)
    time.sleep(2 * POLL)  # two polls more: still one Event per object, and nobody moved
    events = warned()
    assert sorted(e["involvedObject"]["name"] for e in events) == r.following
    assert all(e["type"] == "Warning" and e.get("count", 1) == 1 for e in events)
    assert events[0]["message"] == (
        f"{r.model}@champion names version {v5}, which lacks validation_status=passed required in namespace "
        f"{PROD}; keeping version {v4}"
    )
    assert r.all_at(r.following, v4)
    rows = r.rows()
    assert {n: rows[n]["state"] for n in r.following} == dict.fromkeys(r.following, "gated")

    new = r.workdir / "d.yaml"
    new.write_text(yaml.safe_dump(isvc("d", PROD, f"models:/{r.model}@champion")))
    denied = r.cluster.kubectl("apply", "-f", str(new), check=False)
    assert denied.returncode != 0 and "validation_status=passed" in denied.stderr, denied.stderr
    print(f"\n$ kubectl apply -f d.yaml\n{denied.stderr.strip()}")

    set_at = time.monotonic()
    r.catalog.client.set_model_version_tag(r.model, v5, "validation_status", "passed")
    took = wait_for(lambda: r.all_at(r.following, v5), 2 * POLL + 5, "moved once the tag is set", every=0.05)
    print(f"tag set to all three moved: {took:.2f}s (poll interval {POLL:.0f}s, MLflow delivery installed)")
    assert time.monotonic() - set_at < POLL + 5


def test_e_history_shows_every_change_with_its_cause(rollout: Rollout) -> None:
    r = rollout
    shown = r.run("history", "isvc/a", "-n", PROD)
    assert shown.returncode == 0, shown.stderr
    print(f"\n$ modelpin history isvc/a -n {PROD}\n{shown.stdout}")
    entries = [line.split()[2:4] for line in shown.stdout.splitlines()[1:]]
    # the model is this module's own: its versions are 1 to 5
    assert entries == [
        ["1", "created"],
        ["2", "moved"],
        ["1", "rollback"],
        ["3", "released"],
        ["4", "moved"],
        ["5", "moved"],
    ]
    b = r.run("history", "isvc/b", "-n", PROD)
    print(f"$ modelpin history isvc/b -n {PROD}\n{b.stdout}")
    causes = [line.split()[2:4] for line in b.stdout.splitlines()[1:]]
    assert causes == [["1", "created"], ["2", "moved"], ["3", "moved"], ["4", "released"], ["5", "moved"]]
