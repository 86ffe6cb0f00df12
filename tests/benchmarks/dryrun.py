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
are interleaved too. With ``--floor``, so does the floor (tests/benchmarks/floor.py): a webhook
that parses the review and answers modelpin's own patch for that object, captured beforehand,
over the same TLS settings: what any webhook adds. ``--client-ca`` makes modelpin and the floor
verify the certificate the apiserver presents (the control plane's admission configuration).
``--profile FILE`` writes a cProfile of modelpin serve over the measured rounds.

Reported: the median latency of each, and what the webhook adds (templated minus plain) as
the median over all requests and the spread of the per-round differences.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.e2e.cluster import NS, apply_docs, install_cluster, obj_json, webhook_configuration
from tests.e2e.controlplane import ControlPlane
from tests.support.baseline import describe
from tests.support.catalog import populate
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, modelpin_config
from tests.support.reviews import make_review
from webhook.templating.record_annotations import MANAGED, REFRESH, RESOLVED, TEMPLATES
from webhook.templating.rollout_annotations import HISTORY
from webhook.tools.processes import Process, free_port

LABEL = "modelpin.io/bench-webhook"
OBJECT = "modelpin.io/bench-object"  # which of objects() this is, for the floor's answer
ADMIN = "admin"  # the user of ControlPlane's admin certificate (its common name)
PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices?dryRun=All"


def objects() -> dict[str, dict[str, Any]]:
    """The templated objects, by name."""
    single = obj_json("isvc-canary.yaml")
    single["spec"] = {
        "predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "models:/fraud@champion"}}
    }
    named = {"six-templates": obj_json("isvc-canary.yaml"), "one-template": single}
    for name, obj in named.items():
        obj["metadata"].setdefault("labels", {})[OBJECT] = name
    return named


def routed_configuration(cp: ControlPlane, server: ModelpinServer | FloorServer, route: str) -> dict[str, Any]:
    """The shipped configuration for ``server``, for objects labelled ``LABEL=route`` only."""
    doc = webhook_configuration(cp, server)  # type: ignore[arg-type]  # reads .url and .ca only
    doc["metadata"]["name"] = f"{doc['metadata']['name']}-{route}"
    for hook in doc["webhooks"]:
        hook["objectSelector"] = {"matchLabels": {LABEL: route}}
    return doc


class FloorServer:
    """tests/benchmarks/floor.py as a process, on ``like``'s certificate, answering ``patches``."""

    def __init__(self, workdir: Path, like: ModelpinServer, patches: dict[str, str], client_ca: Path | None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca = like.ca
        (workdir / "patches.json").write_bytes(orjson.dumps(patches))
        argv = [sys.executable, "-m", "tests.benchmarks.floor", str(self.port), str(like.cert), str(like.key)]
        argv.append(str(workdir / "patches.json"))
        if client_ca is not None:
            argv += ["--client-ca", str(client_ca)]
        self.process = Process(argv, workdir / "floor.log", cwd=Path.cwd())
        self.http = httpx.Client(base_url=self.url, verify=like.tls, timeout=10)
        self.process.wait_until(lambda: self.stats()["reviews"] == 0, timeout=30, what="floor server")

    def stats(self) -> dict[str, int]:
        return dict(self.http.post("/stats", content=b"").json())

    def stop(self) -> None:
        self.http.close()
        self.process.stop()


def modelpin_patch(server: ModelpinServer, cp: ControlPlane, obj: dict[str, Any]) -> str:
    """modelpin's patch (base64) for a review of ``obj`` as the apiserver sends it, from the admin."""
    assert cp.webhook_client is not None
    tls = ssl.create_default_context(cafile=str(server.ca))
    tls.load_cert_chain(str(cp.webhook_client.cert), str(cp.webhook_client.key))
    review = make_review(obj, namespace=NS, dry_run=True, username=ADMIN)
    with httpx.Client(base_url=server.url, verify=tls, timeout=10) as http:
        answer = http.post("/mutate", content=orjson.dumps(review), headers={"Content-Type": "application/json"})
    response = answer.json()["response"]
    assert response["allowed"] and response.get("patch"), response
    return str(response["patch"])


def cpu_ns(pid: int) -> int:
    """Nanoseconds of CPU the process's threads have run (schedstat: finer than clock ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total


def peers(port: int) -> set[str]:
    """The peer addresses of the connections established to ``port`` on this host now."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True)
    return {line.split()[-1] for line in out.stdout.splitlines() if line.strip()}


class Client:
    def __init__(self, cp: ControlPlane) -> None:
        context = ssl.create_default_context(cafile=str(cp.ca_file))
        context.load_cert_chain(str(cp.admin_cert), str(cp.admin_key))
        self.http = httpx.Client(base_url=cp.server, verify=context, timeout=30)
        self.seq = 0

    def new(self, obj: dict[str, Any], route: str) -> dict[str, Any]:
        """A new object like ``obj``, routed to ``route``'s webhook."""
        self.seq += 1
        one = copy.deepcopy(obj)
        one["metadata"]["name"] = f"{obj['metadata']['name']}-{self.seq}"
        one["metadata"].setdefault("labels", {})[LABEL] = route
        return one

    def create(self, obj: dict[str, Any], route: str, check: bool = True) -> tuple[float, dict[str, Any]]:
        """One dry-run create of a new object like ``obj``: (seconds, the object the apiserver returned).

        With ``check=False`` a refusal returns the apiserver's Status instead of raising.
        """
        body = orjson.dumps(self.new(obj, route))
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
    ap.add_argument("--floor", action="store_true", help="also measure the constant-answer floor webhook")
    ap.add_argument("--client-ca", action="store_true", help="webhooks verify the apiserver's client certificate")
    ap.add_argument("--profile", type=Path, help="write a cProfile of modelpin serve over the measured rounds")
    ap.add_argument("--out", type=Path, default=Path("benchmarks-out"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="modelpin-dryrun-"))
    mlflow = MlflowServer(work / "mlflow")
    servers: dict[str, ModelpinServer] = {}
    floor: FloorServer | None = None
    (work / "cp").mkdir()
    cp = ControlPlane(work / "cp")
    client: Client | None = None
    try:
        populate(mlflow.url)
        # the creates are sent as the control plane's admin: a user's create, no refresh token
        config = modelpin_config(mlflow.url)
        cp.start()
        assert cp.webhook_client is not None
        client_ca = cp.webhook_client.ca if args.client_ca else None
        extra = ["--client-ca", str(client_ca)] if client_ca is not None else []
        env = {"MODELPIN_PROFILE": str(args.profile.resolve())} if args.profile else None
        servers["new"] = ModelpinServer(work / "modelpin", config, work / "ca", extra_args=extra, env=env)
        if args.baseline is not None:
            # the same settings and arguments, that checkout's package first on the path
            before = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = str(args.baseline.resolve())
            try:
                servers["baseline"] = ModelpinServer(work / "baseline", config, work / "ca", extra_args=extra)
            finally:
                if before is None:
                    del os.environ["PYTHONPATH"]
                else:
                    os.environ["PYTHONPATH"] = before
        install_cluster(cp)
        client = Client(cp)
        templated = objects()
        if args.floor:
            patches = {
                name: modelpin_patch(servers["new"], cp, client.new(obj, "floor")) for name, obj in templated.items()
            }
            floor = FloorServer(work / "floor", servers["new"], patches, client_ca)
        webhooks: dict[str, ModelpinServer | FloorServer] = {**servers}
        if floor is not None:
            webhooks["floor"] = floor
        apply_docs(cp, [routed_configuration(cp, server, route) for route, server in webhooks.items()])
        # each route's webhook answering (the apiserver picks configurations up asynchronously;
        # on a loaded machine the first, cold lookups may miss the webhook's deadline)
        plains: dict[str, dict[str, Any]] = {}
        for route in webhooks:
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
            kinds += [(name, f"templated-{route}", route) for route in webhooks]
        # discarded warm-up: connections, the apiserver's caches, modelpin's resolution cache
        for _ in range(10):
            for name, variant, route in kinds:
                client.create(plains[name] if variant == "plain" else templated[name], route)
        decided = {route: server.metric("modelpin_admission_seconds_count") for route, server in servers.items()}
        floor_before = floor.stats() if floor is not None else {}
        seen: dict[str, set[str]] = {route: set() for route in webhooks}
        times: dict[tuple[str, str], list[list[float]]] = {(n, v): [] for n, v, _ in kinds}
        pids = {route: server.process.proc.pid for route, server in webhooks.items()}
        cpu_before = {route: cpu_ns(pid) for route, pid in pids.items()}
        if args.profile:
            os.kill(servers["new"].process.proc.pid, signal.SIGUSR1)
        load_before = os.getloadavg()[0]
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
            for route, server in webhooks.items():
                seen[route] |= peers(server.port)
        cpu_after = {route: cpu_ns(pid) for route, pid in pids.items()}
        if args.profile:
            os.kill(servers["new"].process.proc.pid, signal.SIGUSR2)
        # the plain creates never reached a webhook; each templated one reached its own
        for route, server in servers.items():
            sent = args.rounds * args.per_round * len(templated)
            got = server.metric("modelpin_admission_seconds_count") - decided[route]
            if got != sent:
                raise AssertionError(f"webhook {route} answered {got} reviews, {sent} templated creates sent")
        if floor is not None:
            floor_after = floor.stats()
            got = floor_after["reviews"] - floor_before["reviews"]
            if got != args.rounds * args.per_round * len(templated):
                raise AssertionError(f"the floor answered {got} reviews")
            print(f"floor: {floor_after['connections'] - floor_before['connections']} connections opened in the rounds")
        reviews = args.rounds * args.per_round * len(templated)
        cpu_us = {route: (cpu_after[route] - cpu_before[route]) / reviews / 1000 for route in webhooks}
        for route, us in cpu_us.items():
            print(f"{route}: {us:.0f} µs of CPU per review (the whole process, over the rounds)")
        # a connection the apiserver re-opens shows up as a new peer port at some round's end
        for route, addresses in seen.items():
            print(f"{route}: {len(addresses)} apiserver connections seen across the rounds' ends")
    finally:
        if client is not None:
            client.http.close()
        cp.stop()
        if floor is not None:
            floor.stop()
        for server in servers.values():
            server.stop()
        mlflow.stop()
        shutil.rmtree(work, ignore_errors=True)

    report: dict[str, Any] = {"rounds": args.rounds, "per_round": args.per_round, "objects": {}}
    report["load"] = [load_before, os.getloadavg()[0]]
    report["client_ca"] = args.client_ca
    report["cpu_us_per_review"] = cpu_us
    print(f"load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after the rounds")
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
        for route in webhooks:
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
        if "floor" in entry:
            entry["ratio"] = entry["new"]["added_ms"] / entry["floor"]["added_ms"]
            print(f"    modelpin adds {entry['ratio']:.2f}x what the floor adds")
        report["objects"][name] = entry
    (args.out / "dryrun.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report


if __name__ == "__main__":
    main()
