"""Load generator, run in its own process: keep-alive HTTPS at a fixed concurrency.

``python -m tests.benchmarks.load URL CA_FILE PAYLOADS_JSON CONCURRENCY REQUESTS [SEQ_BASE]`` prints one
JSON line: requests/s, p50, p99 and max latency in ms, the count of non-200 or denied answers, and
how many distinct objects the timed reviews carried (their bodies but the uid).
Every request carries its own uid, as the apiserver's reviews do.
With ``SEQ_BASE``, every request replaces ``__SEQ__`` in its body by a fresh number above it, so no
two reviews (of this run, or of runs given bases far enough apart) carry the same text.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson

SEQ = b"__SEQ__"
UID = b"__UID__"


def fresh(body: bytes, seq: int | None, objects: set[int] | None = None) -> bytes:
    """``body`` with a new uid and, given ``seq``, that number for ``__SEQ__``.

    ``objects`` collects a hash of each body before its uid is set: one per distinct object.
    """
    if seq is not None:
        body = body.replace(SEQ, str(seq).encode())
    if objects is not None:
        objects.add(hash(body))
    return body.replace(UID, str(uuid.uuid4()).encode())


async def run(
    url: str, ca: str, payloads: list[dict[str, object]], concurrency: int, total: int, seq_base: int | None = None
) -> dict[str, float]:
    context = ssl.create_default_context(cafile=ca)
    latencies: list[float] = []
    objects: set[int] = set()
    failures = 0
    remaining = total
    headers = {"Content-Type": "application/json"}
    bodies = []
    for payload in payloads:
        request = dict(payload["request"])  # type: ignore[arg-type]
        request["uid"] = UID.decode()
        bodies.append(orjson.dumps({**payload, "request": request}))

    async with httpx.AsyncClient(
        verify=context,
        timeout=30,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    ) as client:
        # warm every connection and every cache before timing, with numbers above the timed ones
        warm = None if seq_base is None else seq_base + total
        await asyncio.gather(
            *(
                client.post(
                    url, content=fresh(bodies[i % len(bodies)], None if warm is None else warm + i), headers=headers
                )
                for i in range(concurrency)
            )
        )

        async def worker(index: int) -> None:
            nonlocal remaining, failures
            i = index
            while remaining > 0:
                remaining -= 1
                body = fresh(bodies[i % len(bodies)], None if seq_base is None else seq_base + remaining, objects)
                i += 1
                started = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200 or not orjson.loads(response.content)["response"]["allowed"]:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "rps": n / elapsed,
        "p50_ms": latencies[n // 2] * 1000,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000,
        "max_ms": latencies[-1] * 1000,
        "failures": failures,
        "objects": len(objects),
    }


def main() -> None:
    url, ca, payload_file, concurrency, total = sys.argv[1:6]
    seq_base = int(sys.argv[6]) if len(sys.argv) > 6 else None
    payloads = orjson.loads(Path(payload_file).read_bytes())
    result = asyncio.run(run(url, ca, payloads, int(concurrency), int(total), seq_base))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
