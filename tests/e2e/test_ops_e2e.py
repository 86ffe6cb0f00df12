"""The operator's commands on a real apiserver with the upstream CRDs and a real MLflow server.

What the commands print is shown with ``-s`` (the examples in the docs come from it).

Objects are created through the webhook (so they carry the records modelpin writes);
no reconciler runs in this module, so an alias moved after creation leaves them behind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import Catalog
from tests.support.cli import modelpin
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, modelpin_config

NS = "e2e"
FIELD = "/spec/predictor/model/storageUri"
VENV_BIN = Path(sys.executable).parent


def isvc(name: str, uri: str, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "spec": {"predictor": {"model": {"storageUri": uri}}},
    }


class Ops:
    """Names of this module's objects and models, and the command run as a user would."""

    def __init__(self, cluster: ControlPlane, config: Path, steady: str, moving: str) -> None:
        self.cluster = cluster
        self.config = config
        self.steady = steady
        self.moving = moving
        tag = uuid.uuid4().hex[:6]
        self.names = {k: f"ops-{k}-{tag}" for k in ("current", "behind", "pinned", "paused", "gated")}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return modelpin(*args, "--kubeconfig", str(self.cluster.kubeconfig))

    def status(self, *args: str) -> dict[str, dict[str, Any]]:
        done = self.run("status", "-n", NS, "-o", "json", "--config", str(self.config), *args)
        assert done.returncode in (0, 1) and done.stdout.startswith("{"), done.stderr
        mine = set(self.names.values())
        return {r["name"]: r for r in json.loads(done.stdout)["objects"] if r["name"] in mine}

    def annotations(self, key: str) -> dict[str, str]:
        out = self.cluster.kubectl("get", "isvc", self.names[key], "-n", NS, "-o", "json").stdout
        found: dict[str, str] = json.loads(out)["metadata"].get("annotations") or {}
        return found


@pytest.fixture(scope="module")
def ops(
    webhook: ModelpinServer,
    cluster: ControlPlane,
    catalog: Catalog,
    mlflow_server: MlflowServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Ops:
    config = tmp_path_factory.mktemp("ops") / "config.yaml"
    # the command's configuration gates the namespace on a tag (the webhook's does not)
    approved = {"approved": "yes"}
    policies = {**modelpin_config(mlflow_server.url)["namespaces"], NS: {"require_tags": approved}}
    config.write_text(yaml.safe_dump(modelpin_config(mlflow_server.url, namespaces=policies)))
    steady, moving, gated = (f"ops-{uuid.uuid4().hex[:8]}" for _ in range(3))
    for _ in range(2):
        catalog.new_run_version(steady, experiment=catalog.s3_experiment, tags=approved)
    catalog.client.set_registered_model_alias(steady, "champion", "2")
    for name in (moving, gated):
        catalog.new_run_version(name, experiment=catalog.s3_experiment, tags=approved)
        catalog.client.set_registered_model_alias(name, "champion", "1")
    found = Ops(cluster, config, steady, moving)
    docs = [
        isvc(found.names["current"], f"models:/{steady}@champion"),
        isvc(found.names["pinned"], f"models:/{steady}/1"),
        isvc(found.names["behind"], f"models:/{moving}@champion"),
        isvc(found.names["paused"], f"models:/{moving}@champion", **{"modelpin.io/paused": "true"}),
        isvc(found.names["gated"], f"models:/{gated}@champion"),
    ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    ready = {
        "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    }
    cluster.kubectl(
        "patch",
        "isvc",
        found.names["current"],
        "-n",
        NS,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(ready),
    )
    v2 = catalog.new_run_version(moving, experiment=catalog.s3_experiment, tags=approved)
    catalog.client.set_registered_model_alias(moving, "champion", v2)
    unapproved = catalog.new_run_version(gated, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(gated, "champion", unapproved)
    return found


def test_status_rows_and_states(ops: Ops) -> None:
    rows = ops.status()
    n = ops.names
    assert {name: row["state"] for name, row in rows.items()} == {
        n["current"]: "current",
        n["pinned"]: "pinned",
        n["behind"]: "behind",
        n["paused"]: "paused",
        n["gated"]: "gated",
    }
    assert rows[n["gated"]]["reason"] == "version 2 lacks approved=yes"
    current, behind = rows[n["current"]], rows[n["behind"]]
    assert (current["running_version"], current["registry_version"], current["serving"]) == ("2", "2", "True")
    assert (behind["running_version"], behind["registry_version"], behind["serving"]) == ("1", "2", "unknown")
    assert behind["model"] == ops.moving and behind["reference"] == f"{ops.moving}@champion"
    assert behind["field"] == FIELD and behind["kind"] == "inferenceservice" and behind["namespace"] == NS
    assert rows[n["pinned"]]["running_version"] == "1" and rows[n["paused"]]["reason"] == "modelpin.io/paused=true"
    assert set(ops.status("--state", "behind")) == {n["behind"]}
    assert set(ops.status("--model", ops.steady)) == {n["current"], n["pinned"]}


def test_fail_if_behind_and_the_table(ops: Ops) -> None:
    config = ("--config", str(ops.config))
    table = ops.run("status", "-n", NS, "--fail-if-behind", *config)
    assert table.returncode == 1
    print(f"\n$ modelpin status -n {NS} --fail-if-behind\n{table.stdout}")
    steady = ops.run("status", "-n", NS, "--model", ops.steady, "--fail-if-behind", "-o", "wide", *config)
    assert steady.returncode == 0, steady.stderr
    lines = steady.stdout.splitlines()
    assert lines[0].split()[:6] == ["NAME", "MODEL", "RUNNING", "REGISTRY", "STATE", "SERVING"]
    row = next(line.split() for line in lines if ops.names["current"] in line)
    assert row[:7] == [f"inferenceservice/{ops.names['current']}", ops.steady, "2", "2", "current", "True", FIELD]


def test_hold_and_release_write_and_remove_the_annotation(ops: Ops) -> None:
    target = f"isvc/{ops.names['current']}"
    started = dt.datetime.now(dt.UTC)
    held = ops.run("hold", target, "-n", NS, "--reason", "incident 7", "--for", "2h")
    assert held.returncode == 0, held.stderr
    assert held.stdout.startswith(f"held inferenceservice/{ops.names['current']} in {NS} until ")
    assert held.stdout.rstrip().endswith(": incident 7")
    hold = json.loads(ops.annotations("current")["modelpin.io/hold"])
    until = dt.datetime.fromisoformat(hold["until"])
    assert (hold["reason"], hold["by"], hold["versions"]) == ("incident 7", "admin", {})
    assert dt.timedelta(hours=2) - dt.timedelta(seconds=5) <= until - started <= dt.timedelta(hours=2, seconds=60)
    row = ops.status()[ops.names["current"]]
    assert (row["state"], row["reason"], row["until"]) == ("held", "incident 7", hold["until"])
    print(f"\n$ modelpin hold {target} -n {NS} --reason 'incident 7' --for 2h\n{held.stdout}")
    print(json.dumps(row, indent=2))

    released = ops.run("release", target, "-n", NS)
    assert released.returncode == 0 and released.stdout.startswith("released "), released.stderr
    assert "modelpin.io/hold" not in ops.annotations("current")
    assert ops.status()[ops.names["current"]]["state"] == "current"
    assert ops.run("release", target, "-n", NS).stdout.startswith("no hold on ")


def test_hold_previous_reads_the_history(ops: Ops) -> None:
    target = f"isvc/{ops.names['current']}"
    no_history = ops.run("hold", target, "-n", NS, "--reason", "r", "--previous")
    assert no_history.returncode == 1 and "no earlier version" in no_history.stderr
    history = {
        FIELD: [
            {"version": "1", "uri": "s3://mlflow/7/a/model", "at": "2026-01-01T00:00:00Z", "cause": "created"},
            {"version": "2", "uri": "s3://mlflow/7/b/model", "at": "2026-01-02T00:00:00Z", "cause": "moved"},
        ]
    }
    ops.cluster.kubectl(
        "annotate", "isvc", ops.names["current"], "-n", NS, f"modelpin.io/history={json.dumps(history)}", "--overwrite"
    )
    shown = ops.run("history", target, "-n", NS)
    assert shown.returncode == 0, shown.stderr
    assert [line.split()[2:4] for line in shown.stdout.splitlines()[1:]] == [["1", "created"], ["2", "moved"]]
    print(f"\n$ modelpin history {target} -n {NS}\n{shown.stdout}")
    held = ops.run("hold", target, "-n", NS, "--reason", "roll back", "--previous", "--until", "2099-01-01T00:00:00Z")
    assert held.returncode == 0, held.stderr
    hold = json.loads(ops.annotations("current")["modelpin.io/hold"])
    assert (hold["versions"], hold["until"]) == ({FIELD: "1"}, "2099-01-01T00:00:00Z")
    print(f"\n$ modelpin hold {target} -n {NS} --reason 'roll back' --previous --until 2099-01-01T00:00:00Z")
    print(held.stdout + ops.annotations("current")["modelpin.io/hold"])
    assert ops.run("release", target, "-n", NS).returncode == 0
    missing = ops.run("hold", "isvc/absent", "-n", NS, "--reason", "r")
    assert missing.returncode == 1 and f"inferenceservice/absent in {NS} not found" in missing.stderr


def test_kubectl_runs_modelpin_as_a_plugin(ops: Ops) -> None:
    assert (VENV_BIN / "kubectl-modelpin").is_file(), "kubectl-modelpin is not installed in the venv (pip install -e .)"
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": str(ops.cluster.kubeconfig),
    }
    kubectl = str(ops.cluster.bin_dir / "kubectl")
    done = subprocess.run(
        [kubectl, "modelpin", "status", "-n", NS, "-o", "json", "--config", str(ops.config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    states = {r["name"]: r["state"] for r in json.loads(done.stdout)["objects"]}
    assert states[ops.names["current"]] == "current" and states[ops.names["behind"]] == "behind"
    usage = subprocess.run([kubectl, "modelpin", "hold", "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert usage.stdout.startswith("usage: kubectl modelpin hold"), usage.stderr
