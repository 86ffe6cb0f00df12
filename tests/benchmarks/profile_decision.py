"""In-process cost of one admission decision, and where it goes.

    python -m tests.benchmarks.profile_decision [--reviews N] [--repeats R] [--profile]

No HTTP, no TLS, no other process: the admission benchmark's two objects (the seed
SeldonDeployment, four templates; an InferenceService, six), every review a new object
(``modelpin-new``'s reviews) or the same two (``modelpin-repeated``'s), against the fake
registry of tests/support/fakes.py with a warm resolution cache. Reported in µs per review,
the best of ``--repeats`` passes (the machine is shared: the best pass is the one least
disturbed), for each step of the path:

- ``parse``: ``parse_review`` of the body;
- ``admit``: ``admit`` on a parsed request (survey, plans, cache, URIs, patch, the results tally);
- ``answer``: ``review(uid, response)``, the bytes sent back;
- ``asgi``: the whole ASGI app (``/mutate`` route, body read, all of the above, metrics) called directly,
  and the benchmark's echo app the same way, for what modelpin adds over the stack.

``--profile`` prints cProfile's top functions for ``admit`` on new objects.

``--try`` measures candidate changes to the decision, applied to this process only (nothing
in ``webhook/`` is changed): passes with and without each candidate alternate, so both see the
same machine. Candidates (see ``CANDIDATES``):

- ``route_unmemoised``: ``flavors.needed_flavor`` working out the pointer's route on every call
  (the code before the route was remembered per group, kind and pointer), for a before/after
  in one run; meaningful with servability on (``--servability``).

``--cold`` decides the dry-run benchmark's two objects (tests/benchmarks/dryrun.py: six templates
and one, as a user creates them) one after another ("warm") and with the CPU caches flushed
before each decision by streaming a 4 MiB buffer ("cold"), as the apiserver, etcd and the TLS
work between two reviews do in a server: the median thread CPU time of one decision.

``--servability`` runs the decision with the servability check off and on (``deny``, every
version's MLmodel read at fetch and holding the flavors the objects' servers need: the cache-hit
path), alternating, and reports what the check adds; with ``--try``, each candidate on top.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import os
import pstats
import statistics
import time
import timeit
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson

from tests.benchmarks.admission import SEQ, bench_objects
from tests.benchmarks.servers import echo_app
from tests.support.asgi import post_scope
from tests.support.fakes import FakeRegistry, make_settings, seed_catalog
from tests.support.reviews import make_review
from webhook.admission.decision import admit
from webhook.admission.review import AdmissionRequest, parse_review, review
from webhook.edge.webhook_app import ServerState, create_app
from webhook.registry.resolver import Resolver
from webhook.registry.servability import Flavors, Read
from webhook.templating import flavors
from webhook.templating.spec_fields import interesting_strings


def bodies(mode: str, n: int) -> list[bytes]:
    """``n`` review bodies of the mode's two objects, alternating, each with its own uid."""
    templates = [orjson.dumps(make_review(obj)) for obj in bench_objects(mode)]
    out = []
    for i in range(n):
        body = templates[i % 2].replace(SEQ.encode(), str(1000 + i).encode())
        out.append(body.replace(b'"uid":"', f'"uid":"{i}-'.encode(), 1))
    return out


def resolver() -> Resolver:
    registry = FakeRegistry()
    seed_catalog(registry)
    registry.add("proxied", 1, "mlflow-artifacts:/3/abc/artifacts/model", run_id="abc")
    # wall-clock time: the cache entries are fresh for the whole measurement
    return Resolver(make_settings(), {"mlflow": registry})


async def per_review(step: Callable[[int], Awaitable[object]], n: int, repeats: int) -> float:
    """Best of ``repeats`` passes of ``step(0..n-1)``, in µs per call."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        started = time.process_time()
        for i in range(n):
            await step(i)
        best = min(best, (time.process_time() - started) / n * 1e6)
    return best


# --- candidate changes, tried in this process only ------------------------------------------


@contextlib.contextmanager
def _route_unmemoised() -> Iterator[None]:
    saved = flavors._remembered_route
    flavors._remembered_route = flavors._route  # type: ignore[assignment]
    try:
        yield
    finally:
        flavors._remembered_route = saved


CANDIDATES: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "route_unmemoised": _route_unmemoised,
}


class _ReadsFlavors(FakeRegistry):
    """The fake registry with an MLmodel reader: every version holds the flavors the objects' servers need."""

    def flavor_reader(self, *, read_local: bool = False) -> _AllFlavors:
        return _AllFlavors()


class _AllFlavors:
    async def read(self, location: str, **_: str) -> Read:
        return Flavors(frozenset({"python_function", "sklearn"}), f"{location}/MLmodel")


def servability_resolver(mode: str) -> Resolver:
    registry = _ReadsFlavors()
    seed_catalog(registry)
    registry.add("proxied", 1, "mlflow-artifacts:/3/abc/artifacts/model", run_id="abc")
    return Resolver(make_settings(servability=mode), {"mlflow": registry})


async def servability_pair(names: list[str], n: int, repeats: int) -> dict[str, float]:
    """µs of CPU per ``admit`` of new objects with the servability check off and on (and each candidate)."""
    raw = bodies("new", n)
    requests = [parse_review(b) for b in raw]
    resolvers = {"off": servability_resolver("off"), "on": servability_resolver("deny")}
    for res in resolvers.values():
        call = asgi_caller(create_app(ServerState(res)))
        for body in raw[:2]:
            answer = orjson.loads(await call(body))["response"]
            assert answer["allowed"] and "patch" in answer, answer
            assert not any("servab" in w for w in answer.get("warnings", [])), answer["warnings"]

    def decider(res: Resolver) -> Callable[[int], Awaitable[object]]:
        async def decide(i: int) -> object:
            return await admit(requests[i], resolver=res, settings=res.settings)

        return decide

    variants: dict[str, tuple[Resolver, list[str]]] = {"off": (resolvers["off"], []), "on": (resolvers["on"], [])}
    for name in names:
        variants[f"on+{name}"] = (resolvers["on"], [name])
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeats):
        for label, (res, applied) in variants.items():
            with contextlib.ExitStack() as stack:
                for name in applied:
                    stack.enter_context(CANDIDATES[name]())
                best[label] = min(best[label], await per_review(decider(res), n, 1))
    for res in resolvers.values():
        await res.aclose()
    return best


async def micro(repeats: int) -> dict[str, float]:
    """The candidates' steps alone, in ns per call (min over ``repeats`` timings of 1,000 calls each).

    Less exposed to a loaded machine than whole decisions: each timing is short, and the
    minimum is the one no other process interrupted.
    """
    objects = [parse_review(b)["object"] for b in bodies("new", 2)]
    fields = [(obj, ptr) for obj in objects for ptr, _, _ in interesting_strings(obj, set(), None)]
    n = 1_000

    def best(fn: Callable[[], object]) -> float:
        return min(timeit.repeat(fn, number=n, repeat=repeats)) / n * 1e9

    def needs() -> None:
        for obj, ptr in fields:
            group = obj["apiVersion"].rpartition("/")[0]
            flavors.needed_flavor(group, obj["kind"], obj, ptr)

    out = {"needed_flavor": best(needs) / len(fields)}
    with _route_unmemoised():
        out["needed_unmemo"] = best(needs) / len(fields)
    return out


async def try_candidates(names: list[str], n: int, repeats: int) -> dict[str, float]:
    """µs of CPU per ``admit`` of new objects: today's code, each candidate, and all of them."""
    res = resolver()
    app = create_app(ServerState(res))
    call = asgi_caller(app)
    raw = bodies("new", n)
    for body in raw[:2]:
        assert orjson.loads(await call(body))["response"]["allowed"]
    requests = [parse_review(b) for b in raw]

    async def decide(i: int) -> object:
        return await admit(requests[i], resolver=res, settings=res.settings)

    variants: dict[str, list[str]] = {"today": [], **{name: [name] for name in names}}
    if len(names) > 1:
        variants["all"] = names
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeats):
        for label, applied in variants.items():
            with contextlib.ExitStack() as stack:
                for name in applied:
                    stack.enter_context(CANDIDATES[name]())
                best[label] = min(best[label], await per_review(decide, n, 1))
    await res.aclose()
    return best


# More than a core's caches hold (L1 and L2, and much of its share of L3): streaming it
# between two decisions leaves the second to fetch its code and data from memory again.
EVICT_BYTES = 4 << 20


async def warm_and_cold(n: int) -> dict[str, dict[str, float]]:
    """Median thread CPU µs of one ``admit`` of each dry-run object, caches warm and flushed."""
    from tests.benchmarks.dryrun import objects  # the apiserver benchmark's objects, as it sends them

    res = resolver()
    flush = bytearray(os.urandom(EVICT_BYTES))
    out: dict[str, dict[str, float]] = {}
    for name, obj in objects().items():
        requests = []
        for i in range(n):
            one = {**obj, "metadata": {**obj["metadata"], "name": f"{obj['metadata']['name']}-{i}"}}
            requests.append(parse_review(orjson.dumps(make_review(one))))
        first = (await admit(requests[0], resolver=res, settings=res.settings)).response
        assert first["allowed"] and "patch" in first, first
        out[name] = {}
        for label in ("warm", "cold"):
            times = []
            for request in requests:
                if label == "cold":
                    flush.count(b"modelpin")  # reads every byte of the buffer
                started = time.thread_time_ns()
                await admit(request, resolver=res, settings=res.settings)
                times.append(time.thread_time_ns() - started)
            out[name][label] = statistics.median(times) / 1000
    await res.aclose()
    return out


def asgi_caller(app: Any) -> Callable[[bytes], Awaitable[bytes]]:
    """POST /mutate to ``app`` with raw ASGI messages, as uvicorn would; returns the body sent."""

    async def call(body: bytes) -> bytes:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        scope = post_scope("/mutate", headers)
        sent: list[bytes] = []
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                sent.append(message.get("body", b""))

        await app(scope, receive, send)
        return b"".join(sent)

    return call


async def measure_mode(mode: str, n: int, repeats: int, res: Resolver, app: Any, profile: bool) -> dict[str, float]:
    call, echo = asgi_caller(app), asgi_caller(echo_app())
    raw = bodies(mode, n)
    # warm the resolution cache (and the plan and parse memos) with every object
    for body in raw[:2]:
        answer = orjson.loads(await call(body))["response"]
        assert answer["allowed"] and "patch" in answer, answer
    requests: list[AdmissionRequest] = [parse_review(b) for b in raw]
    answers = [(await admit(r, resolver=res, settings=res.settings)).response for r in requests]

    async def parse(i: int) -> object:
        return parse_review(raw[i])

    async def decide(i: int) -> object:
        return await admit(requests[i], resolver=res, settings=res.settings)

    async def encode(i: int) -> object:
        return review(requests[i]["uid"], answers[i])

    async def whole(i: int) -> object:
        return await call(raw[i])

    async def bare(i: int) -> object:
        return await echo(raw[i])

    result = {
        "parse": await per_review(parse, n, repeats),
        "admit": await per_review(decide, n, repeats),
        "answer": await per_review(encode, n, repeats),
        "asgi": await per_review(whole, n, repeats),
        "echo_asgi": await per_review(bare, n, repeats),
    }
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        for r in requests:
            await admit(r, resolver=res, settings=res.settings)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        print(f"cProfile of admit, {mode} objects:")
        print(out.getvalue())
    return result


async def measure(n: int, repeats: int, profile: bool) -> dict[str, dict[str, float]]:
    res = resolver()
    app = create_app(ServerState(res))
    results = {
        mode: await measure_mode(mode, n, repeats, res, app, profile and mode == "new") for mode in ("new", "repeated")
    }
    await res.aclose()
    return results


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reviews", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--try", dest="candidates", default="", help=f"comma-separated: {', '.join(CANDIDATES)}")
    ap.add_argument("--micro", action="store_true", help="time the candidates' steps alone")
    ap.add_argument("--servability", action="store_true", help="the decision with the servability check off and on")
    ap.add_argument("--cold", action="store_true", help="decisions with the CPU caches warm and flushed")
    args = ap.parse_args(argv)
    if args.cold:
        found = asyncio.run(warm_and_cold(args.reviews))
        print(f"median thread CPU µs of one admit, {args.reviews} new objects each:")
        for name, r in found.items():
            print(f"  {name:<14} warm {r['warm']:7.1f}  cold {r['cold']:7.1f}  ({r['cold'] / r['warm']:.2f}x)")
        return found
    if args.servability:
        names = [name for name in args.candidates.split(",") if name]
        pair = asyncio.run(servability_pair(names, args.reviews, args.repeats))
        print(f"µs of CPU per admit of a new object, best of {args.repeats} alternating passes of {args.reviews}:")
        for label, us in pair.items():
            print(f"  {label:<24} {us:7.1f}  ({(us / pair['off'] - 1) * 100:+.1f} % over off)")
        return {"servability": pair}
    if args.micro:
        steps = asyncio.run(micro(args.repeats))
        print(f"ns per call, min of {args.repeats} timings of 1,000 calls:")
        for label, ns in steps.items():
            print(f"  {label:<15} {ns:7.0f}")
        return {"micro": steps}
    if args.candidates:
        names = args.candidates.split(",")
        tried = asyncio.run(try_candidates(names, args.reviews, args.repeats))
        print(f"µs of CPU per admit of a new object, best of {args.repeats} alternating passes of {args.reviews}:")
        for label, us in tried.items():
            print(f"  {label:<10} {us:7.1f}  ({us - tried['today']:+.1f})")
        return {"candidates": tried}
    results = asyncio.run(measure(args.reviews, args.repeats, args.profile))
    print(
        f"µs per review, best of {args.repeats} passes of {args.reviews} reviews "
        "(seed and InferenceService alternating)"
    )
    print(f"{'mode':<9} {'parse':>7} {'admit':>7} {'answer':>7} {'asgi':>7} {'echo asgi':>10} {'asgi - echo':>12}")
    for mode, r in results.items():
        print(
            f"{mode:<9} {r['parse']:>7.1f} {r['admit']:>7.1f} {r['answer']:>7.1f} {r['asgi']:>7.1f} "
            f"{r['echo_asgi']:>10.1f} {r['asgi'] - r['echo_asgi']:>12.1f}"
        )
    return results


if __name__ == "__main__":
    main()
