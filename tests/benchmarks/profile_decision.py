"""In-process cost of one admission decision, and where it goes.

    python -m tests.benchmarks.profile_decision [--reviews N] [--repeats R] [--profile]

No HTTP, no TLS, no other process: the admission benchmark's two objects (the seed
SeldonDeployment, four templates; an InferenceService, six), every review a new object
(``modelpin-new``'s reviews) or the same two (``modelpin-repeated``'s), against the fake
registry of tests/support/fakes.py with a warm resolution cache. Reported in µs per review,
the best of ``--repeats`` passes (the machine is shared: the best pass is the one least
disturbed), for each step of the path:

- ``parse``: ``parse_review`` of the body;
- ``admit``: ``admit`` on a parsed request (survey, plans, cache, URIs, patch, metrics);
- ``answer``: ``review(uid, response)``, the bytes sent back;
- ``asgi``: the whole ASGI app (``/mutate`` route, body read, all of the above) called directly,
  and the benchmark's echo app the same way, for what modelpin adds over the stack.

``--profile`` prints cProfile's top functions for ``admit`` on new objects.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from tests.benchmarks.admission import SEQ, bench_objects
from tests.benchmarks.servers import echo_app
from tests.support.fakes import FakeRegistry, make_settings, seed_catalog
from tests.support.reviews import make_review
from webhook.admission.decision import admit
from webhook.admission.review import AdmissionRequest, parse_review, review
from webhook.edge.webhook_app import ServerState, create_app
from webhook.registry.resolver import Resolver


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
        started = time.perf_counter()
        for i in range(n):
            await step(i)
        best = min(best, (time.perf_counter() - started) / n * 1e6)
    return best


def asgi_caller(app: Any) -> Callable[[bytes], Awaitable[bytes]]:
    """POST /mutate to ``app`` with raw ASGI messages, as uvicorn would; returns the body sent."""

    async def call(body: bytes) -> bytes:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "https",
            "path": "/mutate",
            "raw_path": b"/mutate",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 443),
        }
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
    answers = [await admit(r, resolver=res) for r in requests]

    async def parse(i: int) -> object:
        return parse_review(raw[i])

    async def decide(i: int) -> object:
        return await admit(requests[i], resolver=res)

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
            await admit(r, resolver=res)
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
    args = ap.parse_args(argv)
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
