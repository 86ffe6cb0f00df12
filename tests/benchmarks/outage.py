"""Registry outage benchmark: how hard one webhook replica leans on a registry that is down.

    python -m tests.benchmarks.outage [--rate 200] [--outage 20] [--recovery 10] [--modelpin-src DIR] [--out FILE]

A real ``mlflow server`` sits behind a fault-injecting proxy
(``tests/support/faulty_proxy.py``) and a real ``modelpin serve`` (TLS) resolves
through it. Reviews arrive open-loop at a steady rate, each naming one of a
few references (aliases, stages, pinned versions) whose cache entries live
two seconds, so every reference needs the registry again and again. The
registry then answers 500s, hangs, and flaps (answers, resets, answers,
500s), each for ``--outage`` seconds with a recovery in between.

Reported per phase: registry requests per second as the proxy counts them,
answers by outcome (500 denials included), answer latency; and per
recovery, the time from the registry's return to the first answer without a
warning, and to the first answer carrying an alias moved during the outage.

``--modelpin-src`` runs ``modelpin serve`` from another checkout (put first on
PYTHONPATH), e.g. a ``git worktree`` of an older commit, for before/after
figures from the same harness.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.support.catalog import populate
from tests.support.faulty_proxy import FaultyProxy
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, isvc, modelpin_config
from tests.support.reviews import apply, make_review
from webhook.templating.record_annotations import RESOLVED
from webhook.tools import certs

POINTER = "/spec/predictor/model/storageUri"
MOVED = "models:/fraud@champion"  # the alias moved during each outage
REFERENCES = (
    MOVED,
    "models:/iris demo1@champion",
    "models:/iris demo2@champion",
    "models:/iris demo3@champion",
    "models:/iris demo4@champion",
    "models:/jukebox@prod",
    "models:/fraud/Staging",
    "models:/iris demo1/latest",
    "models:/fraud/1",
    "models:/iris demo2/1",
)
FLAP = (("pass", 1.0), ("reset", 1.0), ("pass", 1.0), ("error", 1.0))


@dataclass(slots=True)
class Answer:
    sent: float
    done: float
    reference: str
    allowed: bool
    code: int
    warned: bool
    version: str | None
    message: str


@dataclass(slots=True)
class Phase:
    name: str
    mode: str
    started: float
    ended: float = 0.0
    registry_requests: int = 0
    answers: list[Answer] = field(default_factory=list)


def _version(obj: dict[str, Any], response: dict[str, Any]) -> str | None:
    if not response["response"]["allowed"]:
        return None
    annotations = apply(obj, response)["metadata"].get("annotations") or {}
    resolved = orjson.loads(annotations.get(RESOLVED, "{}"))
    entry = resolved.get(POINTER)
    return str(entry["version"]) if entry else None


class Load:
    """Reviews at a steady rate, open-loop: a slow answer never delays the next review."""

    def __init__(self, server: ModelpinServer, rate: float) -> None:
        self.server = server
        self.rate = rate
        self.answers: list[Answer] = []
        self.failures = 0
        self.skipped = 0  # reviews not sent because too many were in flight
        self._stop = asyncio.Event()

    async def run(self) -> None:
        # Several small pools: httpcore assigns queued requests to connections in time quadratic
        # in the queue, so one big pool that falls behind on a busy machine never catches up.
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        clients = [
            httpx.AsyncClient(base_url=self.server.url, verify=self.server.tls, timeout=30, limits=limits)
            for _ in range(8)
        ]
        try:
            await asyncio.gather(*(c.get("/healthz") for c in clients for _ in range(4)))
            started = time.monotonic()
            tasks: set[asyncio.Task[None]] = set()
            # an answer takes at most the lookup deadline: more in flight means this side fell behind
            max_in_flight = int(self.rate * 3)
            i = 0
            while not self._stop.is_set():
                due = started + i / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(tasks) >= max_in_flight:
                    self.skipped += 1
                else:
                    client = clients[i % len(clients)]
                    task = asyncio.create_task(self._one(client, REFERENCES[i % len(REFERENCES)]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                i += 1
                if i % 50 == 0:
                    await asyncio.sleep(0)  # let answers in even when behind schedule
            await asyncio.gather(*tasks)
        finally:
            for c in clients:
                await c.aclose()

    async def _one(self, client: httpx.AsyncClient, reference: str) -> None:
        obj = isvc(reference)
        sent = time.monotonic()
        try:
            r = await client.post(
                "/mutate", content=orjson.dumps(make_review(obj)), headers={"Content-Type": "application/json"}
            )
            body = r.json()
        except (httpx.HTTPError, ValueError):
            self.failures += 1
            return
        done = time.monotonic()
        resp = body["response"]
        status = resp.get("status") or {}
        self.answers.append(
            Answer(
                sent,
                done,
                reference,
                bool(resp["allowed"]),
                int(status.get("code", 200)),
                bool(resp.get("warnings")),
                _version(obj, body),
                str(status.get("message", "")),
            )
        )

    def stop(self) -> None:
        self._stop.set()


def _summarise(phase: Phase) -> dict[str, Any]:
    seconds = phase.ended - phase.started
    latencies = sorted(a.done - a.sent for a in phase.answers)
    codes: dict[str, int] = {}
    for a in phase.answers:
        key = "allowed" + ("+warning" if a.warned else "") if a.allowed else f"denied {a.code}"
        codes[key] = codes.get(key, 0) + 1
    return {
        "phase": phase.name,
        "mode": phase.mode,
        "seconds": round(seconds, 1),
        "registry_requests": phase.registry_requests,
        "registry_requests_per_second": round(phase.registry_requests / seconds, 1),
        "reviews_per_second": round(len(phase.answers) / seconds, 1),
        "outcomes": codes,
        "denied_500": sum(1 for a in phase.answers if not a.allowed and a.code == 500),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1) if latencies else None,
        "latency_max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "examples": sorted({a.message for a in phase.answers if not a.allowed})[:3],
    }


def _recovery(phase: Phase, moved_to: str) -> dict[str, float | None]:
    """From the registry's return to the first clean answer, and to the first with the moved alias."""
    clean = [a.done for a in phase.answers if a.allowed and not a.warned]
    moved = [a.done for a in phase.answers if a.reference == MOVED and a.version == moved_to and not a.warned]
    return {
        "to_first_fresh_answer_s": round(min(clean) - phase.started, 3) if clean else None,
        "to_moved_alias_s": round(min(moved) - phase.started, 3) if moved else None,
    }


async def drive(
    server: ModelpinServer, proxy: FaultyProxy, move: Any, rate: float, outage: float, recovery: float
) -> tuple[list[Phase], dict[str, dict[str, float | None]], Load]:
    plan: list[tuple[str, str, float]] = [("warm", "pass", 6.0)]
    for mode in ("error", "hang", "flap"):
        plan += [(mode, mode, outage), (f"recovered after {mode}", "pass", recovery)]
    load = Load(server, rate)
    runner = asyncio.create_task(load.run())
    phases: list[Phase] = []
    recoveries: dict[str, dict[str, float | None]] = {}
    versions = ["3", "2"]
    for name, mode, seconds in plan:
        before = proxy.total()
        phase = Phase(name, mode, time.monotonic())
        if mode == "flap":
            proxy.flap(FLAP)
        else:
            proxy.set_mode(mode)
        if mode in ("error", "hang"):
            # the registry moves on while modelpin cannot see it
            await asyncio.to_thread(move, versions[0])
        await asyncio.sleep(seconds)
        phase.ended = time.monotonic()
        phase.registry_requests = proxy.total() - before
        phases.append(phase)
        print(f"  {name}: {phase.registry_requests / seconds:.1f} registry requests/s", flush=True)
        if mode in ("error", "hang"):
            recoveries[mode] = {"moved_to": float(versions[0])}
            versions.reverse()
    # let answers to the last phase land before attributing them
    load.stop()
    await runner
    for a in load.answers:
        for phase in phases:
            if phase.started <= a.sent < phase.ended:
                phase.answers.append(a)
                break
    for i, phase in enumerate(phases):
        if phase.name.startswith("recovered after ") and phases[i - 1].mode in ("error", "hang"):
            moved_to = str(int(recoveries[phases[i - 1].mode]["moved_to"] or 0))
            recoveries[phases[i - 1].mode].update(_recovery(phase, moved_to))
    return phases, recoveries, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="reviews per second")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds of each outage")
    parser.add_argument("--recovery", type=float, default=10.0, help="seconds of each recovery")
    parser.add_argument("--modelpin-src", type=Path, help="run modelpin serve from this checkout")
    parser.add_argument("--label", default="", help="a name for this run in the output")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="modelpin-outage-"))
    mlflow = proxy = server = None
    try:
        print("starting mlflow server ...", flush=True)
        mlflow = MlflowServer(workdir / "mlflow")
        catalog = populate(mlflow.url)
        proxy = FaultyProxy(mlflow.port)
        ca_dir = workdir / "ca"
        certs.ensure_ca(ca_dir)
        config = modelpin_config(
            f"http://127.0.0.1:{proxy.port}",
            cache={"pinned_ttl_seconds": 2, "floating_ttl_seconds": 2, "max_stale_seconds": 600},
        )
        env = None
        if args.modelpin_src is not None:
            env = {"PYTHONPATH": os.pathsep.join([str(args.modelpin_src.resolve()), os.environ.get("PYTHONPATH", "")])}
        server = ModelpinServer(workdir / "modelpin", config, ca_dir, env=env)
        for reference in REFERENCES:
            server.review(make_review(isvc(reference)))

        def move(version: str) -> None:
            catalog.client.set_registered_model_alias("fraud", "champion", version)

        print(f"driving {args.rate:.0f} reviews/s ...", flush=True)
        phases, recoveries, load = asyncio.run(drive(server, proxy, move, args.rate, args.outage, args.recovery))
        report = {
            "label": args.label,
            "modelpin_src": str(args.modelpin_src or "this checkout"),
            "rate": args.rate,
            "phases": [_summarise(p) for p in phases],
            "recovery": recoveries,
            "transport_failures": load.failures,
            "reviews_not_sent": load.skipped,
            "registry_errors_metric": server.metric("modelpin_registry_errors_total"),
        }
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        if args.out is not None:
            args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    finally:
        if server is not None:
            server.stop()
        if proxy is not None:
            proxy.close()
        if mlflow is not None:
            mlflow.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
