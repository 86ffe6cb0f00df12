"""Scale on the real apiserver: many templated objects over many models, one alias move.

    python -m tests.benchmarks.scale [--objects 2000] [--models 200] [--out DIR]

Starts the test control plane, a real mlflow server, ``modelpin serve`` behind
the shipped webhook configuration and ``modelpin reconcile`` with an MLflow
webhook, creates the objects through the apiserver (so every one is admitted),
moves one alias, and reports the time until every object using it is
re-admitted, that no other object was written, and the reconciler's RSS.
"""

from __future__ import annotations

import argparse
import json
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.e2e.cluster import NS, apply_docs, install_cluster, wait_for_webhook, webhook_configuration
from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_reconciler_e2e import SECRET, Reconciler
from tests.support.catalog import populate
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, modelpin_config
from webhook.reconcile.deliveries import EVENTS
from webhook.tools import certs


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("benchmarks-out"))
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="modelpin-scale-"))
    ca_dir = work / "ca"
    certs.ensure_ca(ca_dir)
    started: list[Any] = []
    try:
        (work / "cp").mkdir()
        cp = ControlPlane(work / "cp").start()
        started.append(cp)
        mlflow = MlflowServer(work / "mlflow", trusted_ca=ca_dir / "ca.crt")
        started.append(mlflow)
        catalog = populate(mlflow.url)
        server = ModelpinServer(work / "modelpin", modelpin_config(mlflow.url), ca_dir)
        started.append(server)
        install_cluster(cp)
        apply_docs(cp, [webhook_configuration(cp, server)])
        wait_for_webhook(cp)

        t0 = time.monotonic()
        names = [f"scale-{i:03d}" for i in range(args.models)]
        for name in names:
            version = catalog.new_run_version(name, experiment=catalog.s3_experiment)
            catalog.client.set_registered_model_alias(name, "champion", version)
        register_s = time.monotonic() - t0

        docs = [
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": f"obj-{i:04d}", "namespace": NS, "labels": {"model": names[i % args.models]}},
                "spec": {"predictor": {"model": {"storageUri": f"models:/{names[i % args.models]}@champion"}}},
            }
            for i in range(args.objects)
        ]
        t0 = time.monotonic()
        for start in range(0, len(docs), 250):
            cp.kubectl("create", "-f", "-", input=yaml.safe_dump_all(docs[start : start + 250]), timeout=600)
        create_s = time.monotonic() - t0

        rec = Reconciler(work / "reconciler", cp, mlflow.url, ca_dir, lease="scale", poll=3600, identity="scale")
        started.append(rec)
        rec.wait_synced(args.objects)
        hook = catalog.client.create_webhook(
            name="modelpin-scale", url=f"{rec.url}/mlflow/events", events=list(EVENTS), secret=SECRET
        )  # type: ignore[arg-type]
        time.sleep(2)  # the mlflow server's webhook list cache (1 s in tests)

        context = ssl.create_default_context(cafile=str(cp.ca_file))
        context.load_cert_chain(str(cp.admin_cert), str(cp.admin_key))
        api = httpx.Client(base_url=cp.server, verify=context, timeout=60)
        path = f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices"

        def listing() -> dict[str, tuple[str, str]]:
            items = api.get(path).json()["items"]
            return {
                o["metadata"]["name"]: (o["metadata"]["resourceVersion"], o["spec"]["predictor"]["model"]["storageUri"])
                for o in items
            }

        before = listing()
        target = names[0]
        users = {
            n
            for n, d in zip([d["metadata"]["name"] for d in docs], docs, strict=True)
            if d["metadata"]["labels"]["model"] == target
        }
        version = catalog.new_run_version(target, experiment=catalog.s3_experiment)
        expected = catalog.location(target, version)
        t0 = time.monotonic()
        catalog.client.set_registered_model_alias(target, "champion", version)
        while True:
            r = api.get(path, params={"labelSelector": f"model={target}"}).json()["items"]
            if all(o["spec"]["predictor"]["model"]["storageUri"] == expected for o in r):
                break
            if time.monotonic() - t0 > 120:
                raise TimeoutError("alias move not propagated in 120 s")
            time.sleep(0.05)
        propagate_s = time.monotonic() - t0
        time.sleep(2)
        after = listing()
        written = {n for n in after if after[n][0] != before[n][0]}
        catalog.client.delete_webhook(hook.webhook_id)
        api.close()
        result = {
            "objects": args.objects,
            "models": args.models,
            "register_models_s": register_s,
            "create_objects_s": create_s,
            "objects_using_moved_alias": len(users),
            "objects_written_after_move": len(written),
            "written_outside_users": sorted(written - users),
            "move_to_all_readmitted_s": propagate_s,
            "reconciler_rss_mb": rss_mb(rec.process.proc.pid),
            "webhook_rss_mb": rss_mb(server.process.proc.pid),
        }
    finally:
        for thing in reversed(started):
            thing.stop()
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
