"""Registry calls per poll cycle, before (resolve every reference) and after (search, then the changed).

    python -m tests.benchmarks.poll_calls [--models 200 2000] [--objects-per-model 10]

The reconciler and the REST registry client are the real ones; MLflow's REST API is
emulated in-process (httpx.MockTransport) so that every HTTP request is counted.
Half the models are referenced by alias, a quarter by stage, a quarter pinned (name/7).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from typing import Any

import httpx
from kubernetes_asyncio import client as k8s

from tests.support.fakes import make_settings
from webhook.config import RegistryConfig
from webhook.reconcile.kube import Kind, Kube
from webhook.reconcile.reconciler import Reconciler
from webhook.reconcile.touching import Toucher
from webhook.registry.clients import RestRegistry
from webhook.registry.resolver import Resolver
from webhook.templating import record_annotations as records

KIND = Kind.parse("serving.kserve.io/v1beta1/inferenceservices")


class Mlflow:
    def __init__(self, models: int) -> None:
        self.names = [f"m{i:05d}" for i in range(models)]
        self.alias = dict.fromkeys(self.names, "1")
        self.calls: Counter[str] = Counter()

    def version(self, name: str, v: str) -> dict[str, Any]:
        return {
            "name": name,
            "version": v,
            "status": "READY",
            "current_stage": "Production",
            "source": f"s3://b/{name}/{v}",
            "run_id": "",
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/2.0/mlflow")
        self.calls[path] += 1
        q = request.url.params
        if path == "/registered-models/search":
            start = int(q.get("page_token") or 0)
            size = int(q.get("max_results", "100"))
            page = self.names[start : start + size]
            body: dict[str, Any] = {
                "registered_models": [
                    {
                        "name": n,
                        "aliases": [{"alias": "champion", "version": self.alias[n]}],
                        "latest_versions": [self.version(n, self.alias[n])],
                    }
                    for n in page
                ]
            }
            if start + size < len(self.names):
                body["next_page_token"] = str(start + size)
            return httpx.Response(200, json=body)
        if path == "/registered-models/alias":
            return httpx.Response(200, json={"model_version": self.version(q["name"], self.alias[q["name"]])})
        if path == "/model-versions/get":
            return httpx.Response(200, json={"model_version": self.version(q["name"], q["version"])})
        if path == "/model-versions/search":
            name = q["filter"].split("'")[1]
            return httpx.Response(200, json={"model_versions": [self.version(name, self.alias[name])]})
        return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": path})


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def obj(i: int, name: str, template: str, version: str) -> dict[str, Any]:
    ptr = "/spec/predictor/model/storageUri"
    selector = template.split(name, 1)[1]
    resolved = {
        "registry": "mlflow",
        "model": name,
        "selector": selector,
        "version": version,
        "run_id": "",
        "uri": f"s3://b/{name}/{version}",
    }
    return {
        "kind": "InferenceService",
        "metadata": {
            "name": f"o{i}",
            "namespace": "ns",
            "uid": str(i),
            "annotations": {
                records.TEMPLATES: json.dumps({ptr: template}),
                records.RESOLVED: json.dumps({ptr: resolved}),
            },
        },
    }


async def measure(models: int, per_model: int) -> dict[str, Any]:
    mlflow = Mlflow(models)
    settings = make_settings()
    registry = RestRegistry(
        "mlflow", RegistryConfig(tracking_uri="http://mlflow.invalid"), httpx.MockTransport(mlflow.handle)
    )
    rec = Reconciler(Resolver(settings, {"mlflow": registry}), Kube(k8s.Configuration(), 1), [KIND])
    i = 0
    for n, name in enumerate(mlflow.names):
        template = [
            f"models:/{name}@champion",
            f"models:/{name}@champion",
            f"models:/{name}/Production",
            f"models:/{name}/1",
        ][n % 4]
        for _ in range(per_model):
            rec.index.upsert(KIND, obj(i, name, template, "1"))
            i += 1
    mlflow.calls.clear()
    await rec.compare()
    before = sum(mlflow.calls.values())
    await rec.poller.poll_once()  # the first cycle learns every model's fingerprint (and compares all once)
    mlflow.calls.clear()
    await rec.poller.poll_once()
    quiet = dict(mlflow.calls)
    mlflow.alias[mlflow.names[0]] = "2"  # one alias moves
    mlflow.calls.clear()
    touched_calls = Counter[str]()

    async def no_touch(self: Toucher, t: Any, token: int, stale: Any) -> bool:
        return True

    Toucher.touch = no_touch  # type: ignore[method-assign]  # no apiserver here: count registry calls only
    await rec.poller.poll_once()
    touched_calls.update(mlflow.calls)
    await registry.aclose()
    rss = rss_mb()
    return {
        "process_rss_mb_with_index": round(rss, 1),
        "models": models,
        "objects": i,
        "before_full_resolve_calls": before,
        "after_quiet_cycle_calls": sum(quiet.values()),
        "after_quiet_cycle": quiet,
        "after_one_alias_move_calls": sum(touched_calls.values()),
        "after_one_alias_move": dict(touched_calls),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, nargs="+", default=[200, 2000])
    ap.add_argument("--objects-per-model", type=int, default=10)
    args = ap.parse_args(argv)
    results = [asyncio.run(measure(m, args.objects_per_model)) for m in args.models]
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
