"""What the webhook adds to a server-side dry-run create on the real kube-apiserver.

    python -m tests.benchmarks.dryrun [--rounds N] [--per-round K] [--baseline /tmp/modelpin-<rev>] [--out DIR]

etcd + kube-apiserver (tests/e2e/controlplane.py), the shipped CRDs, guard policy and
MutatingWebhookConfiguration pointed at a local ``modelpin serve`` (as the e2e suite does),
a real MLflow server. One client (httpx, keep-alive, the admin certificate) POSTs
``?dryRun=All`` creates of InferenceServices, one at a time, interleaved request by request:

- ``templated``: an object with templates, which the matchConditions send to modelpin;
- ``plain``: the same object with the URIs modelpin resolves them to written in, which the
  matchConditions skip: the apiserver's own cost of the same create.

Two objects: the admission benchmark's InferenceService (six templates) and a minimal one
(one template). Every request is a new object (a new name and ``modelpin.io/refresh`` token),
so nothing about it repeats. With ``--baseline DIR`` a second webhook configuration points at
``modelpin serve`` of another checkout, chosen per object by a label, and its templated creates
are interleaved too.

Reported: the median latency of each, and what the webhook adds (templated minus plain) as
the median over all requests and the spread of the per-round differences.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import ssl
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.e2e.cluster import NS, apply_docs, install_cluster, obj_json, webhook_configuration
from tests.e2e.controlplane import ControlPlane
from tests.support.baseline import describe, revision_server
from tests.support.catalog import populate
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, modelpin_config
from tests.support.reviews import RECONCILER
from webhook.templating.record_annotations import MANAGED, REFRESH, RESOLVED, TEMPLATES
from webhook.templating.rollout_annotations import HISTORY

LABEL = "modelpin.io/bench-webhook"
ADMIN = "admin"  # the user of ControlPlane's admin certificate (its common name)
PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices?dryRun=All"


def objects() -> dict[str, dict[str, Any]]:
    """The templated objects, by name."""
    single = obj_json("isvc-canary.yaml")
    single["spec"] = {
        "predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "models:/fraud@champion"}}
    }
    return {"six-templates": obj_json("isvc-canary.yaml"), "one-template": single}


def routed_configuration(cp: ControlPlane, server: ModelpinServer, route: str) -> dict[str, Any]:
    """The shipped configuration for ``server``, for objects labelled ``LABEL=route`` only."""
    doc = webhook_configuration(cp, server)
    doc["metadata"]["name"] = f"{doc['metadata']['name']}-{route}"
    for hook in doc["webhooks"]:
        hook["objectSelector"] = {"matchLabels": {LABEL: route}}
    return doc


class Client:
    def __init__(self, cp: ControlPlane) -> None:
        context = ssl.create_default_context(cafile=str(cp.ca_file))
        context.load_cert_chain(str(cp.admin_cert), str(cp.admin_key))
        self.http = httpx.Client(base_url=cp.server, verify=context, timeout=30)
        self.seq = 0

    def create(self, obj: dict[str, Any], route: str, check: bool = True) -> tuple[float, dict[str, Any]]:
        """One dry-run create of a new object like ``obj``: (seconds, the object the apiserver returned).

        With ``check=False`` a refusal returns the apiserver's Status instead of raising.
        """
        self.seq += 1
        one = copy.deepcopy(obj)
        one["metadata"]["name"] = f"{obj['metadata']['name']}-{self.seq}"
        one["metadata"].setdefault("labels", {})[LABEL] = route
        # a number far below any cache entry's fetch time: the resolution cache still serves
        one["metadata"].setdefault("annotations", {})[REFRESH] = str(self.seq)
        body = orjson.dumps(one)
        started = time.perf_counter()
        response = self.http.post(PATH, content=body, headers={"Content-Type": "application/json"})
        elapsed = time.perf_counter() - started
        if check and response.status_code != 201:
            raise AssertionError(f"{response.status_code}: {response.text[:500]}")
        return elapsed, dict(response.json())


def resolved(answer: dict[str, Any]) -> bool:
    spec = json.dumps(answer.get("spec", "{{"))  # a Status (refused) has no spec
    return "{{" not in spec and "models:/" not in spec


def plain_of(answer: dict[str, Any]) -> dict[str, Any]:
    """The object as modelpin returned it, without modelpin's label and records: no template left."""
    obj = {"apiVersion": answer["apiVersion"], "kind": answer["kind"], "spec": answer["spec"]}
    meta = answer["metadata"]
    labels = {k: v for k, v in meta.get("labels", {}).items() if k not in (MANAGED, LABEL)}
    notes = {k: v for k, v in meta.get("annotations", {}).items() if k not in (TEMPLATES, RESOLVED, REFRESH, HISTORY)}
    obj["metadata"] = {"name": meta["name"].rsplit("-", 1)[0], "namespace": meta["namespace"]}
    if labels:
        obj["metadata"]["labels"] = labels
    if notes:
        obj["metadata"]["annotations"] = notes
    return obj


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--per-round", type=int, default=30, help="requests of each kind per round")
    ap.add_argument("--baseline", type=Path, help="a checkout of another commit, measured as templated-baseline")
    ap.add_argument("--out", type=Path, default=Path("benchmarks-out"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="modelpin-dryrun-"))
    mlflow = MlflowServer(work / "mlflow")
    servers: dict[str, ModelpinServer] = {}
    (work / "cp").mkdir()
    cp = ControlPlane(work / "cp")
    client: Client | None = None
    try:
        populate(mlflow.url)
        # the creates are sent as the control plane's admin, whose refresh tokens must count as the
        # reconciler's do (reconciler_usernames), so each new token still only fences the cache
        config = modelpin_config(mlflow.url, reconciler_usernames=[RECONCILER, ADMIN])
        servers["new"] = ModelpinServer(work / "modelpin", config, work / "ca")
        if args.baseline is not None:
            servers["baseline"] = revision_server(
                args.baseline, work / "baseline", modelpin_config(mlflow.url), work / "ca"
            )
        cp.start()
        install_cluster(cp)
        apply_docs(cp, [routed_configuration(cp, server, route) for route, server in servers.items()])
        client = Client(cp)
        templated = objects()
        # each route's webhook answering (the apiserver picks configurations up asynchronously;
        # on a loaded machine the first, cold lookups may miss the webhook's deadline)
        plains: dict[str, dict[str, Any]] = {}
        for route in servers:
            deadline = time.monotonic() + 120
            for name, obj in templated.items():
                while not resolved(answer := client.create(obj, route, check=False)[1]):
                    if time.monotonic() > deadline:
                        raise AssertionError(f"webhook {route} never resolved {name}")
                    time.sleep(0.5)
                plains[name] = plain_of(answer)
        kinds: list[tuple[str, str, str]] = []  # (object, variant, route)
        for name in templated:
            kinds.append((name, "plain", "new"))
            kinds += [(name, f"templated-{route}", route) for route in servers]
        # discarded warm-up: connections, the apiserver's caches, modelpin's resolution cache
        for _ in range(10):
            for name, variant, route in kinds:
                client.create(plains[name] if variant == "plain" else templated[name], route)
        decided = {route: server.metric("modelpin_admission_seconds_count") for route, server in servers.items()}
        times: dict[tuple[str, str], list[list[float]]] = {(n, v): [] for n, v, _ in kinds}
        for round_no in range(args.rounds):
            for series in times.values():
                series.append([])
            for i in range(args.per_round):
                # rotate the order, so no kind always follows the same other
                shift = (round_no * args.per_round + i) % len(kinds)
                for name, variant, route in kinds[shift:] + kinds[:shift]:
                    obj = plains[name] if variant == "plain" else templated[name]
                    elapsed, answer = client.create(obj, route)
                    if variant != "plain" and not resolved(answer):
                        raise AssertionError(f"{variant} answer not resolved: {answer['spec']}")
                    times[(name, variant)][-1].append(elapsed)
        # the plain creates never reached a webhook; each templated one reached its own
        for route, server in servers.items():
            sent = args.rounds * args.per_round * len(templated)
            got = server.metric("modelpin_admission_seconds_count") - decided[route]
            if got != sent:
                raise AssertionError(f"webhook {route} answered {got} reviews, {sent} templated creates sent")
    finally:
        if client is not None:
            client.http.close()
        cp.stop()
        for server in servers.values():
            server.stop()
        mlflow.stop()
        shutil.rmtree(work, ignore_errors=True)

    report: dict[str, Any] = {"rounds": args.rounds, "per_round": args.per_round, "objects": {}}
    if args.baseline is not None:
        report["baseline"] = describe(args.baseline)
        print(f"templated-baseline: modelpin serve of {report['baseline']}")
    print(
        f"\nserver-side dry-run creates of InferenceServices on kube-apiserver, one at a time, "
        f"{args.rounds} rounds x {args.per_round} of each kind, interleaved"
    )
    for name in templated:
        plain = times[(name, "plain")]
        plain_all = [t for r in plain for t in r]
        entry: dict[str, Any] = {"plain_p50_ms": statistics.median(plain_all) * 1000}
        print(f"  {name}: plain p50 {entry['plain_p50_ms']:.2f} ms")
        for route in servers:
            series = times[(name, f"templated-{route}")]
            flat = [t for r in series for t in r]
            per_round = [
                (statistics.median(t) - statistics.median(p)) * 1000 for t, p in zip(series, plain, strict=True)
            ]
            added = (statistics.median(flat) - statistics.median(plain_all)) * 1000
            entry[route] = {
                "p50_ms": statistics.median(flat) * 1000,
                "added_ms": added,
                "added_per_round_ms": per_round,
            }
            print(
                f"    templated-{route}: p50 {statistics.median(flat) * 1000:.2f} ms, adds {added:.2f} ms "
                f"(rounds: median {statistics.median(per_round):.2f}, {min(per_round):.2f} to {max(per_round):.2f})"
            )
        report["objects"][name] = entry
    (args.out / "dryrun.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report


if __name__ == "__main__":
    main()
