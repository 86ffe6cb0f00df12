"""Scale on the real apiserver: many templated objects over many models, alias moves.

    python -m tests.benchmarks.scale [--objects 20000] [--models 2000] [--hot 2000]
                                     [--create-budget 900] [--out DIR]

Starts the test control plane, a real mlflow server, ``modelpin serve`` behind
the shipped webhook configuration and ``modelpin reconcile`` with an MLflow
webhook and the default touch rate, and creates the objects through the
apiserver (so every one is admitted). ``--hot`` of them use one model; the rest
are spread round-robin over the others. Then:

- one ordinary model's alias moves: the time until every object using it is
  re-admitted, and that no other object was written;
- the hot model's alias moves: the time until all ``--hot`` objects are
  re-admitted, which the touch rate bounds (20/s by default);
- the reconciler's RSS with everything indexed, before and after the moves.

Creating objects stops at ``--create-budget`` seconds (the figures say how many
there were): on a shared two-core machine 20,000 admissions may not fit.
"""

from __future__ import annotations

import argparse
import json
import ssl
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml
from mlflow.tracking import MlflowClient

from tests.e2e.cluster import NS, apply_docs, install_cluster, wait_for_webhook, webhook_configuration
from tests.e2e.controlplane import ControlPlane
from tests.support.catalog import populate
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, modelpin_config
from tests.support.reconciler_process import SECRET, Reconciler, account_kubeconfig, install_reconciler_account
from webhook.reconcile.deliveries import EVENTS
from webhook.tools import certs

PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def source(name: str, version: int) -> str:
    # a plain object-store source: what is measured is the reconciler, not run lookups
    return f"s3://mlflow/7/scale/{name}/v{version}"


def register(client: MlflowClient, names: list[str]) -> None:
    """Each model with version 1 as @champion, registered concurrently (serially this takes an hour here)."""

    def one(name: str) -> None:
        client.create_registered_model(name)
        client.create_model_version(name, source=source(name, 1), await_creation_for=0)
        client.set_registered_model_alias(name, "champion", "1")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))


def move(client: MlflowClient, name: str, version: int) -> str:
    client.create_model_version(name, source=source(name, version), await_creation_for=0)
    client.set_registered_model_alias(name, "champion", str(version))
    return source(name, version)


def isvc(i: int, model: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": f"obj-{i:05d}", "namespace": NS, "labels": {"model": model}},
        "spec": {"predictor": {"model": {"storageUri": f"models:/{model}@champion"}}},
    }


def create(cp: ControlPlane, docs: list[dict[str, Any]], budget: float) -> tuple[int, float]:
    """Create in chunks, a few kubectl at once, until done or out of budget; returns (created, seconds)."""
    chunk = 250
    chunks = [docs[i : i + chunk] for i in range(0, len(docs), chunk)]
    t0 = time.monotonic()
    created = 0
    with ThreadPoolExecutor(3) as pool:
        for start in range(0, len(chunks), 3):
            if time.monotonic() - t0 > budget:
                break
            batch = chunks[start : start + 3]
            list(
                pool.map(
                    lambda part: cp.kubectl("create", "-f", "-", input=yaml.safe_dump_all(part), timeout=900), batch
                )
            )
            created += sum(len(part) for part in batch)
            print(f"created {created} objects in {time.monotonic() - t0:.0f}s", flush=True)
    return created, time.monotonic() - t0


def wait_all(api: httpx.Client, model: str, expected: str, timeout: float, every: float) -> float:
    t0 = time.monotonic()
    while True:
        items = api.get(PATH, params={"labelSelector": f"model={model}"}).json()["items"]
        if items and all(o["spec"]["predictor"]["model"]["storageUri"] == expected for o in items):
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            done = sum(o["spec"]["predictor"]["model"]["storageUri"] == expected for o in items)
            raise TimeoutError(f"{model}: {done}/{len(items)} re-admitted after {timeout} s")
        time.sleep(every)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=20000)
    ap.add_argument("--models", type=int, default=2000)
    ap.add_argument("--hot", type=int, default=2000, help="objects using one model, for the touch-rate figure")
    ap.add_argument("--create-budget", type=float, default=900.0, help="seconds for creating objects")
    ap.add_argument("--out", type=Path, default=Path("benchmarks-out"))
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="modelpin-scale-"))
    ca_dir = work / "ca"
    certs.ensure_ca(ca_dir)
    started: list[Any] = []
    result: dict[str, Any] = {}
    try:
        (work / "cp").mkdir()
        cp = ControlPlane(work / "cp").start()
        started.append(cp)
        mlflow = MlflowServer(work / "mlflow", trusted_ca=ca_dir / "ca.crt")
        started.append(mlflow)
        client = populate(mlflow.url).client  # wait_for_webhook probes with the seed models
        server = ModelpinServer(work / "modelpin", modelpin_config(mlflow.url), ca_dir)
        started.append(server)
        install_cluster(cp)
        apply_docs(cp, [webhook_configuration(cp, server)])
        wait_for_webhook(cp)

        names = [f"scale-{i:04d}" for i in range(args.models)]
        hot, ordinary = names[0], names[1:]
        t0 = time.monotonic()
        register(client, names)
        result["register_models_s"] = round(time.monotonic() - t0, 1)
        print(f"registered {len(names)} models in {result['register_models_s']}s", flush=True)

        # the hot model's objects first, so that a run out of budget still measures the touch rate
        docs = [isvc(i, hot) for i in range(args.hot)]
        docs += [isvc(args.hot + i, ordinary[i % len(ordinary)]) for i in range(args.objects - args.hot)]
        created, create_s = create(cp, docs, args.create_budget)
        created_docs = docs[:created]
        result.update(objects=created, objects_asked=args.objects, create_objects_s=round(create_s, 1))
        result["models_used"] = len({d["metadata"]["labels"]["model"] for d in created_docs})

        install_reconciler_account(cp, "scale-reconciler-leases")
        t0 = time.monotonic()
        rec = Reconciler(
            work / "reconciler",
            cp,
            mlflow.url,
            ca_dir,
            lease="scale",
            poll=3600,
            identity="scale",
            lease_seconds=15,  # the shipped default; 4 s would be lost while 20,000 objects are decoded
            kubeconfig=account_kubeconfig(cp, work / "reconciler.kubeconfig"),  # as its ServiceAccount
        )
        started.append(rec)
        rec.wait_synced(created, timeout=1800)
        result["reconciler_start_to_synced_s"] = round(time.monotonic() - t0, 1)
        result["reconciler_rss_mb_synced"] = round(rss_mb(rec.process.proc.pid), 1)
        hook = client.create_webhook(
            name="modelpin-scale",
            url=f"{rec.url}/mlflow/events",
            events=list(EVENTS),  # type: ignore[arg-type]  # mlflow types events as literals
            secret=SECRET,
        )
        time.sleep(2)  # the mlflow server's webhook list cache (1 s in tests)

        context = ssl.create_default_context(cafile=str(cp.ca_file))
        context.load_cert_chain(str(cp.admin_cert), str(cp.admin_key))
        api = httpx.Client(base_url=cp.server, verify=context, timeout=120)

        def listing() -> dict[str, str]:
            return {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in api.get(PATH).json()["items"]}

        def users(model: str) -> set[str]:
            return {d["metadata"]["name"] for d in created_docs if d["metadata"]["labels"]["model"] == model}

        def measured(model: str, version: int, timeout: float, every: float) -> tuple[float, set[str]]:
            before = listing()
            expected = move(client, model, version)  # the clock starts once MLflow has the alias
            took = wait_all(api, model, expected, timeout, every)
            time.sleep(2)  # anything written late would show
            after = listing()
            return took, {n for n in after if after[n] != before.get(n)}

        target = ordinary[0]
        took, written = measured(target, 2, 120, 0.05)
        result["one_move"] = {
            "model": target,
            "objects_using_it": len(users(target)),
            "move_to_all_readmitted_s": round(took, 2),
            "objects_written": len(written),
            "written_outside_users": sorted(written - users(target)),
        }
        print(json.dumps(result["one_move"]), flush=True)

        if args.hot:
            took, written = measured(hot, 2, 900, 0.5)
            result["hot_move"] = {
                "model": hot,
                "objects_using_it": len(users(hot)),
                "touch_rate_per_second": 20,
                "touch_burst": 20,
                "move_to_all_readmitted_s": round(took, 1),
                "objects_written": len(written),
                "written_outside_users": sorted(written - users(hot))[:20],
            }
            print(json.dumps(result["hot_move"]), flush=True)
        result["reconciler_rss_mb_after_moves"] = round(rss_mb(rec.process.proc.pid), 1)
        result["webhook_rss_mb"] = round(rss_mb(server.process.proc.pid), 1)
        client.delete_webhook(hook.webhook_id)
        api.close()
    finally:
        stop_all: list[Callable[[], None]] = [thing.stop for thing in reversed(started)]
        for stop in stop_all:
            stop()
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
