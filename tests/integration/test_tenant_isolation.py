"""One review naming a thousand missing references must not stall the webhook for everyone.

Black box: a real ``modelpin serve`` over TLS in front of a real mlflow server. One
InferenceService holds 1,000 distinct references to aliases that do not exist; while it
is being answered, another tenant's ordinary reviews (each a cache miss that goes to
the registry) are timed, and compared with the same reviews on a quiet webhook.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.catalog import Catalog
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, isvc, modelpin_config
from tests.support.reviews import make_review

pytestmark = pytest.mark.integration

DEADLINE = 2.0
TIMEOUT = 5.0
FLOOD = 1000


@pytest.fixture(scope="module")
def shared(
    mlflow_server: MlflowServer, catalog: Catalog, ca_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelpinServer]:
    # the per-review cap on references raised, so the flood reaches the registry layer
    config = modelpin_config(mlflow_server.url, lookup_deadline_seconds=DEADLINE, max_references_per_review=FLOOD)
    # The single-worker test registry shares two cores with everything else: the call timeout is
    # raised so that what opens the circuit here can only be modelpin counting its own queue.
    config["registries"]["mlflow"]["timeout_seconds"] = TIMEOUT
    server = ModelpinServer(tmp_path_factory.mktemp("tenants"), config, ca_dir)
    yield server
    server.stop()


def flood_object(prefix: str) -> dict[str, Any]:
    env = [{"name": f"R{i}", "value": f"models:/iris@{prefix}{i}"} for i in range(1, FLOOD)]
    obj = isvc(f"models:/iris@{prefix}0", name="flood")
    obj["spec"]["predictor"]["model"]["env"] = env
    return obj


async def _post(client: httpx.AsyncClient, obj: dict[str, Any], namespace: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    r = await client.post(
        "/mutate",
        content=orjson.dumps(make_review(obj, namespace=namespace)),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()["response"]
    return time.perf_counter() - started, answer


def _circuit(server: ModelpinServer) -> dict[str, Any]:
    body: dict[str, Any] = server.client.get("/readyz").json()["registries"]["mlflow"]
    return body


# distinct cache keys, each a real version whose lookup takes two registry calls (version, run)
QUIET = [f"models:/iris demo{m}/{v}" for m in (1, 2) for v in (1, 2)]
BUSY = [f"models:/iris demo{m}/{v}" for m in (3, 4) for v in (1, 2)]


def test_a_review_of_a_thousand_missing_references_does_not_stall_other_tenants(shared: ModelpinServer) -> None:
    async def run() -> tuple[list[float], float, dict[str, Any], list[float], list[dict[str, Any]]]:
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        async with httpx.AsyncClient(base_url=shared.url, verify=shared.tls, timeout=60, limits=limits) as client:
            await asyncio.gather(*(client.get("/healthz") for _ in range(4)))
            quiet = []
            for uri in QUIET:
                elapsed, answer = await _post(client, isvc(uri), "tenant-b")
                assert answer["allowed"], answer
                quiet.append(elapsed)
            flood = asyncio.create_task(_post(client, flood_object("a"), "tenant-a"))
            busy: list[float] = []
            busy_answers: list[dict[str, Any]] = []
            await asyncio.sleep(0.3)  # the flood's lookups are under way
            for uri in BUSY:
                elapsed, answer = await _post(client, isvc(uri), "tenant-b")
                busy.append(elapsed)
                busy_answers.append(answer)
            flood_elapsed, flood_answer = await flood
            return quiet, flood_elapsed, flood_answer, busy, busy_answers

    quiet, flood_elapsed, flood_answer, busy, busy_answers = asyncio.run(run())
    time.sleep(TIMEOUT + 0.5)  # every call sent for the flood has landed: the circuit has its verdicts
    circuit = _circuit(shared)
    opens = shared.metric("modelpin_registry_circuit_opens_total", registry="mlflow")
    print(
        f"\nflood of {FLOOD} answered in {flood_elapsed:.2f}s; other tenant quiet "
        f"median {statistics.median(quiet) * 1000:.0f}ms max {max(quiet) * 1000:.0f}ms, during flood "
        f"median {statistics.median(busy) * 1000:.0f}ms max {max(busy) * 1000:.0f}ms "
        f"({sum(a['allowed'] for a in busy_answers)}/{len(busy)} allowed); circuit {circuit}, opens {opens}"
    )
    assert all(a["allowed"] for a in busy_answers), busy_answers
    assert flood_answer["allowed"] is False
    assert "iris" in flood_answer["status"]["message"]
    assert flood_elapsed < DEADLINE + 1.0
    assert circuit["state"] == "closed" and circuit["last_failure"] is None and opens == 0
    # the flood's lookups that never got a slot were dropped, not sent late
    assert shared.metric("modelpin_registry_lookups_abandoned_total", registry="mlflow") > 0
    # "about as fast": no queueing behind the flood in modelpin (that took seconds, or a 503), only
    # the registry's own share among the lookups in flight to it; a 2-core machine is noisy, hence the slack
    assert statistics.median(busy) < statistics.median(quiet) + 0.5, (quiet, busy)
    assert max(busy) < max(quiet) + 1.0, (quiet, busy)
