"""Admission benchmark: echo vs naive vs modelpin, same machine, same TLS, same payloads.

    python -m tests.benchmarks.admission [--seconds S] [--rounds N] [--levels 1,16,64]
        [--baseline /tmp/modelpin-<rev>] [--out DIR]

Starts a real mlflow server with real models, the servers on one test CA, and
drives each from a separate load process. Prints a table with ratios taken in
this one run, the cold-path figures, and writes a PNG plot.

These machines are shared and drift by tens of percent within a minute, so at
each concurrency level echo and modelpin are measured in several short rounds,
back to back, and each modelpin round is compared with the echo round next to
it. Each server's own CPU time per request (from /proc) is reported too: it
does not depend on what else the machine is doing as much as throughput does.

Every review carries its own uid, as the apiserver's do, and every one is
decided in full (only resolutions are cached). modelpin is measured two ways,
both with the resolution cache warm:

- ``modelpin-repeated``: the same two objects again and again (re-applied
  manifests, unchanged GitOps syncs);
- ``modelpin-new``: every review is an object never seen before: a new name, a
  new ``modelpin.io/refresh`` token (sent as the reconciler, whose tokens alone count) and a new value
  in an ordinary spec string (as when an image tag changes), so nothing about
  the object repeats, only the templates it holds.

``--baseline DIR`` adds a third, ``baseline-new``: ``modelpin serve`` of another
checkout (a git worktree of an older commit) given the ``modelpin-new``
reviews, measured in the same interleaved rounds.

Each way has its own ``modelpin serve`` process, so its counters say how it
answered: the benchmark reads ``modelpin_admission_seconds_count`` by outcome
and ``modelpin_cache_total`` by result around every timed round. With two or
more CPUs the servers share the last one, and the load generator and the MLflow
server get the others, so a server never competes for its core with its own
load or with the registry.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
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

from tests.support.baseline import describe, revision_server
from tests.support.catalog import populate
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, concurrent_reviews, isvc, modelpin_config
from tests.support.reviews import RECONCILER, fixture, make_review
from webhook.templating.record_annotations import REFRESH
from webhook.tools.processes import Process, free_port

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk.lua"


def start_comparison(
    kind: str, workdir: Path, cert: Path, key: Path, ca: Path, tracking_uri: str
) -> tuple[Process, str]:
    port = free_port()
    proc = Process(
        [sys.executable, "-m", "tests.benchmarks.servers", kind, str(port), str(cert), str(key), tracking_uri],
        workdir / f"{kind}.log",
    )
    context = ssl.create_default_context(cafile=str(ca))

    def up() -> bool:
        # any HTTP answer means the TLS listener is up
        return httpx.get(f"https://127.0.0.1:{port}/", verify=context, timeout=2).status_code in (404, 405)

    proc.wait_until(up, timeout=60, what=f"{kind} server")
    return proc, f"https://127.0.0.1:{port}/mutate"


# how each modelpin measurement varies its reviews (see the module docstring)
MODES = {"modelpin-repeated": "repeated", "modelpin-new": "new"}
BASELINE = "baseline-new"
SERVERS = ("echo", *MODES, "naive")
SEQ = "__SEQ__"
# what a modelpin server's counters say about a timed round
PATHS = {
    "patched": ("modelpin_admission_seconds_count", {"outcome": "patched"}),
    "admitted": ("modelpin_admission_seconds_count", {}),
    "cache_hit": ("modelpin_cache_total", {"result": "hit"}),
    "cache_miss": ("modelpin_cache_total", {"result": "miss"}),
    "cache_bypass": ("modelpin_cache_total", {"result": "bypass"}),
}


def bench_objects(mode: str = "repeated") -> list[dict[str, Any]]:
    """The two objects; ``new`` carries ``__SEQ__`` wherever each review differs."""
    seed, canary = fixture("seldon-seed.yaml"), fixture("isvc-canary.yaml")
    if mode == "new":
        seed["spec"]["name"] = f"iris-{SEQ}"
        canary["spec"]["transformer"]["containers"][0]["image"] = f"example.com/fraud-transformer:{SEQ}"
        for obj in (seed, canary):
            obj["metadata"]["name"] = f"{obj['metadata']['name']}-{SEQ}"
            # a number far below any cache entry's fetch time (ms since the epoch): the cache still serves
            obj["metadata"].setdefault("annotations", {})[REFRESH] = SEQ
    return [seed, canary]


def counters(server: ModelpinServer) -> dict[str, float]:
    """The server's counters named in ``PATHS`` (one /metrics read)."""
    text = server.client.get("/metrics").text
    out = dict.fromkeys(PATHS, 0.0)
    for line in text.splitlines():
        for key, (name, labels) in PATHS.items():
            if (line.startswith(name + "{") or line.startswith(name + " ")) and all(
                f'{k}="{v}"' in line for k, v in labels.items()
            ):
                out[key] += float(line.rsplit(" ", 1)[1])
    return out


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` onto ``cpus``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task.name), cpus)


def pin_group(pgid: int, cpus: set[int]) -> None:
    """Every process of the process group ``pgid`` (a server and its workers) onto ``cpus``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            group = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2])
            if group == pgid:
                pin(int(entry.name), cpus)
        except (FileNotFoundError, ProcessLookupError):
            continue


def drive(
    url: str, ca: Path, payloads: Path, concurrency: int, requests: int, seq_base: int | None = None
) -> dict[str, float]:
    argv = [sys.executable, "-m", "tests.benchmarks.load", url, str(ca), str(payloads), str(concurrency), str(requests)]
    out = subprocess.run(
        argv if seq_base is None else [*argv, str(seq_base)],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    result: dict[str, float] = orjson.loads(out.stdout.strip().splitlines()[-1])
    return result


def drive_wrk(
    url: str, bodies: list[Path], concurrency: int, seconds: float, seq_base: int | None = None
) -> dict[str, float]:
    """The same measurement with wrk (C, epoll): far less client overhead than a Python driver."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_SCRIPT),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
        env={
            **os.environ,
            "MODELPIN_BENCH_BODIES": ":".join(str(b) for b in bodies),
            "MODELPIN_BENCH_SEQ_BASE": "" if seq_base is None else str(seq_base),
        },
    )
    r = orjson.loads(out.stdout.strip().splitlines()[-1])
    return {
        "requests": r["requests"],
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
        "failures": r["errors"],
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def combine(runs: list[dict[str, float]]) -> dict[str, Any]:
    """One server at one level over its rounds: medians, the worst max, all runs kept."""
    return {
        "requests": sum(r["requests"] for r in runs),
        "rps": statistics.median(r["rps"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "max_ms": max(r["max_ms"] for r in runs),
        "failures": sum(r["failures"] for r in runs),
        "cpu_us": statistics.median(r["cpu_us"] for r in runs),
        "runs": runs,
    }


def paired_ratios(server: dict[str, Any], echo: dict[str, Any]) -> list[float]:
    """Throughput ratio of each round to the echo round measured next to it."""
    return [m["rps"] / e["rps"] for m, e in zip(server["runs"], echo["runs"], strict=True) if e["rps"]]


def cold_path(server: ModelpinServer, catalog: Any) -> dict[str, float]:
    name = f"cold-{int(time.time() * 1000)}"
    version = catalog.new_run_version(name, experiment=catalog.s3_experiment)
    catalog.client.set_registered_model_alias(name, "champion", version)
    before = server.metric("modelpin_registry_lookups_total")
    calls = server.metric("modelpin_registry_request_seconds_count")
    answers = concurrent_reviews(server, isvc(f"models:/{name}@champion", "cold"), 100)
    times = [elapsed for elapsed, _ in answers]
    return {
        "registry_lookups": server.metric("modelpin_registry_lookups_total") - before,
        "registry_http_calls": server.metric("modelpin_registry_request_seconds_count") - calls,
        "first_answer_ms": min(times) * 1000,
        "last_answer_ms": max(times) * 1000,
        "allowed": sum(1 for _, a in answers if a["response"]["allowed"]),
    }


def plot(results: dict[str, dict[int, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server, by_level in results.items():
        levels = sorted(c for c in by_level if by_level[c]["rps"])  # not a level where nothing was answered
        ax1.plot(levels, [by_level[c]["p99_ms"] for c in levels], marker="o", label=server)
        ax2.plot(levels, [by_level[c]["rps"] for c in levels], marker="o", label=server)
    for ax, title in ((ax1, "p99 latency (ms)"), (ax2, "throughput (requests/s)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrency")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("modelpin admission over HTTPS: echo ceiling vs naive vs modelpin")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000, help="per server, level and round, with httpx")
    ap.add_argument("--naive-requests", type=int, default=150)
    ap.add_argument("--levels", default="1,16,64")
    ap.add_argument("--seed-requests", type=int, default=2000, help="sequential seed SeldonDeployment reviews")
    ap.add_argument("--out", type=Path, default=Path("benchmarks-out"))
    ap.add_argument("--driver", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx")
    ap.add_argument("--seconds", type=float, default=4.0, help="per server, level and round, with wrk")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of echo and modelpin per level")
    ap.add_argument("--warmup", type=float, default=5.0, help="discarded load per server before measuring, with wrk")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another commit (git worktree): its modelpin serve is measured as baseline-new",
    )
    ap.add_argument("--no-naive", dest="naive", action="store_false", help="skip the naive server")
    ap.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="leave servers and load generator where the scheduler puts them",
    )
    args = ap.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="modelpin-bench-"))
    mlflow = MlflowServer(work / "mlflow")
    procs: list[Process] = []
    servers: dict[str, ModelpinServer] = {}
    cpus = sorted(os.sched_getaffinity(0))
    pinned = args.pin and len(cpus) >= 2
    stack = contextlib.ExitStack()
    # the servers measured in interleaved rounds, and the review mode each is given
    ways = {"echo": "new", **MODES}
    if args.baseline is not None:
        ways[BASELINE] = "new"
    try:
        catalog = populate(mlflow.url)
        for name in MODES:
            servers[name] = ModelpinServer(work / name, modelpin_config(mlflow.url), work / "ca")
        if args.baseline is not None:
            servers[BASELINE] = revision_server(
                args.baseline, work / BASELINE, modelpin_config(mlflow.url), work / "ca"
            )
        modelpin = servers["modelpin-repeated"]
        # per mode: the wrk body files and the httpx driver's payload file
        inputs: dict[str, tuple[list[Path], Path]] = {}
        for mode in ("repeated", "new"):
            # sent as the reconciler: only its refresh tokens are honoured (reconciler_usernames)
            reviews = [make_review(obj, username=RECONCILER) for obj in bench_objects(mode)]
            for one in reviews:
                one["request"]["uid"] = f"review-{SEQ}"  # the load generators number every review
            files = [work / f"{mode}-seed.json", work / f"{mode}-isvc.json"]
            for path, one in zip(files, reviews, strict=True):
                path.write_bytes(orjson.dumps(one))
            (work / f"{mode}.json").write_bytes(orjson.dumps(reviews))
            inputs[mode] = (files, work / f"{mode}.json")
        urls = {name: f"{server.url}/mutate" for name, server in servers.items()}
        pids = {name: server.process.proc.pid for name, server in servers.items()}
        for kind in ("echo", "naive") if args.naive else ("echo",):
            proc, url = start_comparison(kind, work, modelpin.cert, modelpin.key, modelpin.ca, mlflow.url)
            procs.append(proc)
            urls[kind] = url
            pids[kind] = proc.proc.pid
        if pinned:
            for pid in set(pids.values()):
                pin(pid, {cpus[-1]})
            # this process and so every load generator it starts
            os.sched_setaffinity(0, set(cpus[:-1]))
            # The registry too: its work (answering the renewals of cache entries) is not the
            # servers' own, and in a cluster it runs elsewhere.
            pin_group(mlflow.process.proc.pid, set(cpus[:-1]))
        # Discarded warm-up: right after setup the mlflow server keeps the CPU busy for a while
        # (seen as p99 spikes of hundreds of ms in whichever server is measured first).
        # It also fills each server's resolution cache.
        for server, mode in ways.items():
            files, payloads = inputs[mode]
            warm_base = 1  # measured runs start far above
            if args.driver == "wrk":
                drive_wrk(urls[server], files, 1, args.warmup, warm_base)
            else:
                drive(urls[server], modelpin.ca, payloads, 1, 200, warm_base)
        results: dict[str, dict[int, dict[str, Any]]] = {k: {} for k in (*ways, "naive")}
        runs_so_far = 0
        primer = stack.enter_context(
            httpx.Client(verify=ssl.create_default_context(cafile=str(modelpin.ca)), timeout=60)
        )

        def measure(server: str, level: int, seconds: float) -> dict[str, float]:
            nonlocal runs_so_far
            runs_so_far += 1
            files, payloads = inputs[ways.get(server, "repeated")]
            # numbers never repeat across runs, so no review of one run is the same object as another's
            seq_base = runs_so_far * 10_000_000
            # One review of each payload first: a server idle while the others were measured
            # has let its cache entries expire, and the round is meant to measure a warm cache.
            for path in files:
                body = path.read_bytes().replace(SEQ.encode(), str(seq_base - 1).encode())
                primed = primer.post(urls[server], content=body, headers={"Content-Type": "application/json"})
                answer = primed.json()["response"]
                # wrk counts HTTP errors only: a way whose objects are denied would measure denials
                if server != "echo" and not (answer["allowed"] and answer.get("patch")):
                    raise RuntimeError(f"{server} did not patch {path.name}: {answer}")
            watched = servers.get(server)
            seen = counters(watched) if watched is not None else {}
            before = cpu_seconds(pids[server])
            if args.driver == "wrk":
                r = drive_wrk(urls[server], files, level, seconds, seq_base)
            else:
                n = args.naive_requests if server == "naive" else args.requests
                r = drive(urls[server], modelpin.ca, payloads, level, max(n, level), seq_base)
            r["cpu_us"] = (cpu_seconds(pids[server]) - before) / max(r["requests"], 1) * 1e6
            if watched is not None:
                # how the server answered this round (with httpx: its warm-up reviews included)
                after = counters(watched)
                r.update({k: after[k] - seen[k] for k in PATHS})
                if server in MODES and r["patched"] != r["admitted"]:
                    raise RuntimeError(f"{server}: {r['admitted'] - r['patched']} reviews not patched: {r}")
            return r

        for level in levels:
            rounds: dict[str, list[dict[str, float]]] = {k: [] for k in ways}
            for _ in range(args.rounds):
                for server, runs in rounds.items():
                    runs.append(measure(server, level, args.seconds))
            for server, runs in rounds.items():
                results[server][level] = combine(runs)
        seed_only = work / "seed.json"
        seed_only.write_bytes(orjson.dumps([make_review(fixture("seldon-seed.yaml"))]))
        seed = drive(urls["modelpin-repeated"], modelpin.ca, seed_only, 1, args.seed_requests)
        # the same run against echo: what the client and the machine alone add to the tail
        seed_echo = drive(urls["echo"], modelpin.ca, seed_only, 1, args.seed_requests)
        cold = cold_path(modelpin, catalog)
        # naive last: its backlog of timed-out requests keeps it and the registry busy afterwards
        if args.naive:
            for level in levels:
                results["naive"][level] = combine([measure("naive", level, max(args.seconds, 10.0))])
    finally:
        stack.close()
        os.sched_setaffinity(0, cpus)  # the caller (a test session, say) gets all its CPUs back
        for proc in procs:
            proc.stop()
        for server_process in servers.values():
            server_process.stop()
        mlflow.stop()
        shutil.rmtree(work, ignore_errors=True)

    shown = [s for s in (*ways, "naive") if results[s]]
    print(f"\nload driver: {args.driver}")
    if args.baseline is not None:
        print(f"{BASELINE}: modelpin serve of {describe(args.baseline)}")
    if pinned:
        print(f"servers pinned to CPU {cpus[-1]}, load generator and MLflow to CPU {','.join(map(str, cpus[:-1]))}")
    print("\nadmission over HTTPS, payloads: seed SeldonDeployment (4 templates) + InferenceService (6 templates)")
    print(
        f"medians of {args.rounds} interleaved rounds per level (naive: one round); cpu: the server's own per request"
    )
    print(
        f"{'server':<17} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'cpu us':>7} {'fail':>5}"
    )
    for level in levels:
        for server in shown:
            r = results[server][level]
            print(
                f"{server:<17} {level:>4} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                f"{r['max_ms']:>8.2f} {r['cpu_us']:>7.0f} {int(r['failures']):>5}"
            )
    print("\nratios (same run): throughput, median of rounds paired with the echo round next to them [min-max];")
    print("cpu: echo's CPU per request over the server's")
    compared = [w for w in ways if w != "echo"]
    for level in levels:
        e = results["echo"][level]
        parts = []
        for label in compared:
            r = results[label][level]
            ratios = paired_ratios(r, e)
            cpu = f"{e['cpu_us'] / r['cpu_us']:.2f}" if r["cpu_us"] else "n/a"  # under one clock tick
            parts.append(
                f"{label}/echo {statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}] (cpu {cpu})"
            )
        if results["naive"]:
            n, m = results["naive"][level], results["modelpin-new"][level]
            parts.append(
                f"modelpin-new/naive {m['rps'] / n['rps']:.0f}" if n["rps"] else "naive answered nothing in time"
            )
        print(f"  concurrency {level:>3}: {', '.join(parts)}")
    print("\nhow each server answered its timed rounds (counter deltas over all levels and rounds):")
    for server in compared:
        runs = [run for level in levels for run in results[server][level]["runs"]]
        sent = sum(run["requests"] for run in runs)
        totals = {k: sum(run.get(k, 0.0) for run in runs) for k in PATHS}
        print(
            f"  {server:<17} {int(sent)} reviews answered: {int(totals['patched'])} decisions patched "
            f"of {int(totals['admitted'])}, cache hits {int(totals['cache_hit'])}, "
            f"misses {int(totals['cache_miss'])}, bypasses {int(totals['cache_bypass'])}"
        )
    print(
        f"\nwarm cache, {int(seed['requests'])} sequential HTTPS reviews of the seed SeldonDeployment "
        f"(httpx driver): p50 {seed['p50_ms']:.2f} ms, p99 {seed['p99_ms']:.2f} ms, max {seed['max_ms']:.2f} ms; "
        f"echo p50 {seed_echo['p50_ms']:.2f} ms, p99 {seed_echo['p99_ms']:.2f} ms, max {seed_echo['max_ms']:.2f} ms"
    )
    print(
        f"\ncold path: 100 concurrent reviews of one uncached reference -> {int(cold['registry_lookups'])} registry "
        f"lookup(s), {int(cold['registry_http_calls'])} HTTP call(s) to the registry; "
        f"first answer {cold['first_answer_ms']:.1f} ms, last {cold['last_answer_ms']:.1f} ms, "
        f"{int(cold['allowed'])}/100 allowed"
    )
    shown_results = {k: results[k] for k in shown}
    png = args.out / "admission-latency.png"
    plot(shown_results, png)
    print(f"plot: {png}")
    report = {"results": shown_results, "cold": cold, "seed": seed, "seed_echo": seed_echo}
    if args.baseline is not None:
        report["baseline"] = describe(args.baseline)
    (args.out / "admission.json").write_bytes(
        orjson.dumps(report, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2)
    )
    return report


if __name__ == "__main__":
    main()
