"""When the registry is down, stalls, fails or flaps, and when certificates rotate.

The registry sits behind a TCP forwarder that the test cuts or stalls, or a
proxy that answers 500s, resets connections or flaps; the mlflow server
behind it stays real, and modelpin is a real ``modelpin serve`` over TLS.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography import x509

from tests.support.catalog import Catalog
from tests.support.faulty_proxy import FaultyProxy
from tests.support.forwarder import Forwarder
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, isvc, modelpin_config
from tests.support.reviews import apply, at, make_review
from webhook.tools import certs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def forwarder(mlflow_server: MlflowServer) -> Iterator[Forwarder]:
    fwd = Forwarder(mlflow_server.port)
    yield fwd
    fwd.close()


@pytest.fixture(scope="module")
def flaky(
    forwarder: Forwarder, catalog: Catalog, ca_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelpinServer]:
    config = modelpin_config(
        f"http://127.0.0.1:{forwarder.port}",
        cache={"pinned_ttl_seconds": 0.5, "floating_ttl_seconds": 0.5, "max_stale_seconds": 600},
        lookup_deadline_seconds=1.0,
        cert_reload_seconds=0.2,
    )
    server = ModelpinServer(tmp_path_factory.mktemp("flaky"), config, ca_dir)
    yield server
    server.stop()


def test_registry_down_serves_stale_with_warning_then_denies_uncached(
    flaky: ModelpinServer, forwarder: Forwarder, catalog: Catalog
) -> None:
    obj = isvc("models:/fraud@champion")
    warm = apply(obj, flaky.review(make_review(obj)))
    expected = catalog.location("fraud", catalog.version_for("fraud", "champion"))
    assert at(warm, "/spec/predictor/model/storageUri") == expected
    forwarder.cut()
    try:
        time.sleep(0.7)  # past the floating TTL: the entry is stale now
        answer = flaky.review(make_review(obj))
        assert at(apply(obj, answer), "/spec/predictor/model/storageUri") == expected
        warnings = answer["response"]["warnings"]
        assert any("serving version" in w and "did not answer" in w for w in warnings), warnings

        started = time.monotonic()
        denied = flaky.review(make_review(isvc("models:/fraud/3")))["response"]
        assert time.monotonic() - started < 1.5
        assert denied["allowed"] is False and denied["status"]["code"] == 503
        assert "no usable cached resolution" in denied["status"]["message"]
        assert "models:/fraud/3" in denied["status"]["message"]
    finally:
        forwarder.restore()


def test_stalled_registry_answers_within_the_deadline(
    flaky: ModelpinServer, forwarder: Forwarder, catalog: Catalog
) -> None:
    obj = isvc("models:/fraud/1")
    flaky.review(make_review(obj))
    forwarder.hang()
    try:
        time.sleep(0.7)
        started = time.monotonic()
        stale = flaky.review(make_review(obj))["response"]
        stale_elapsed = time.monotonic() - started
        started = time.monotonic()
        cold = flaky.review(make_review(isvc("models:/fraud/2")))["response"]
        cold_elapsed = time.monotonic() - started
    finally:
        forwarder.restore()
    assert stale["allowed"] is True and stale["warnings"]
    assert cold["allowed"] is False and "deadline" in cold["status"]["message"]
    # deadline is 1.0 s; the answer must not wait for the registry beyond it
    assert stale_elapsed < 1.6 and cold_elapsed < 1.6


def _served_serial(server: ModelpinServer) -> int:
    context = ssl.create_default_context(cafile=str(server.ca))
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_serving_certificate_is_reloaded_without_restart(flaky: ModelpinServer, ca_dir: Path, tmp_path: Path) -> None:
    before = _served_serial(flaky)
    pid = flaky.process.proc.pid
    fresh = certs.issue(ca_dir, ["localhost", "127.0.0.1"])
    # rotate in place the way a Secret volume does: new files replace the old
    flaky.key.write_bytes(fresh.key.read_bytes())
    flaky.cert.write_bytes(fresh.cert.read_bytes())
    expected = x509.load_pem_x509_certificate(fresh.cert.read_bytes()).serial_number
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _served_serial(flaky) == before:
        time.sleep(0.1)
    assert _served_serial(flaky) == expected != before
    assert flaky.process.proc.poll() is None and flaky.process.proc.pid == pid
    assert flaky.metric("modelpin_cert_reloads_total", result="ok") >= 1


# --- a registry that fails in other ways: 500s, resets, flapping -----------------------------

SECRET = "postgresql://modelpin:s3cret@db.internal/mlflow"


@pytest.fixture(scope="module")
def proxy(mlflow_server: MlflowServer) -> Iterator[FaultyProxy]:
    # what a real MLflow server answers when its backend store is gone: the store URI in the message
    body = orjson.dumps({"error_code": "INTERNAL_ERROR", "message": f"(OperationalError) cannot reach {SECRET}"})
    fwd = FaultyProxy(mlflow_server.port, error_body=body)
    yield fwd
    fwd.close()


@pytest.fixture(scope="module")
def guarded(
    proxy: FaultyProxy, catalog: Catalog, ca_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelpinServer]:
    config = modelpin_config(
        f"http://127.0.0.1:{proxy.port}",
        cache={"pinned_ttl_seconds": 0.5, "floating_ttl_seconds": 0.5, "max_stale_seconds": 600},
        lookup_deadline_seconds=1.0,
        registry_health={"failure_threshold": 3, "open_seconds": 0.5, "max_open_seconds": 2.0},
    )
    config["registries"]["mlflow"]["timeout_seconds"] = 0.5
    server = ModelpinServer(tmp_path_factory.mktemp("guarded"), config, ca_dir)
    yield server
    server.stop()


def _until(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def _steady(server: ModelpinServer, uris: list[str], rate: float, seconds: float) -> list[dict[str, Any]]:
    """Reviews at a steady rate, open-loop, over a few TLS connections; every answer's ``response``."""

    async def run() -> list[dict[str, Any]]:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=server.url, verify=server.tls, timeout=30, limits=limits) as client:

            async def one(uri: str) -> dict[str, Any]:
                r = await client.post(
                    "/mutate",
                    content=orjson.dumps(make_review(isvc(uri))),
                    headers={"Content-Type": "application/json"},
                )
                assert r.status_code == 200, r.text
                answer: dict[str, Any] = r.json()["response"]
                return answer

            tasks = []
            started = time.monotonic()
            for i in range(int(rate * seconds)):
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
                tasks.append(asyncio.create_task(one(uris[i % len(uris)])))
            return list(await asyncio.gather(*tasks))

    return asyncio.run(run())


def test_flapping_registry_gives_no_500_and_is_not_hammered(guarded: ModelpinServer, proxy: FaultyProxy) -> None:
    uris = ["models:/iris demo1@champion", "models:/iris demo2@champion", "models:/fraud/1"]
    for uri in uris:
        assert guarded.review(make_review(isvc(uri)))["response"]["allowed"]
    failing_before = proxy.requests["reset"] + proxy.requests["error"]
    # mostly failing, in both ways a registry fails: connections reset, and 500s
    proxy.flap([("pass", 0.5), ("reset", 1.5), ("pass", 0.5), ("error", 1.5)])
    try:
        answers = _steady(guarded, uris, rate=40, seconds=8)
    finally:
        proxy.set_mode("pass")
    failing = proxy.requests["reset"] + proxy.requests["error"] - failing_before
    codes = [a["status"]["code"] for a in answers if not a["allowed"]]
    assert 500 not in codes
    # every reference was cached: each review is answered, stale with a warning at worst
    assert codes == []
    assert any(a.get("warnings") for a in answers)
    # Without backoff, each review in a failing window sends a lookup (at least 0.75 of all
    # reviews). With it, each failing window costs the threshold's calls and a probe or two.
    print(f"{failing} registry requests in failing windows for {len(answers)} reviews")
    assert failing < len(answers) / 4, (failing, len(answers))
    assert guarded.metric("modelpin_registry_circuit_opens_total") >= 1
    assert guarded.metric("modelpin_admission_seconds_count", outcome="internal_error") == 0
    # recovery: a fresh answer once the registry is back and a probe has gone through
    _until(lambda: not guarded.review(make_review(isvc(uris[0])))["response"].get("warnings"))


def test_registry_500s_open_the_circuit_shown_in_readyz_and_hide_the_store_uri(
    guarded: ModelpinServer, proxy: FaultyProxy
) -> None:
    cached = "models:/iris demo3@champion"
    assert guarded.review(make_review(isvc(cached)))["response"]["allowed"]
    _until(lambda: guarded.client.get("/readyz").json()["registries"]["mlflow"]["state"] == "closed")
    proxy.set_mode("error")
    try:
        time.sleep(0.6)  # past the TTL
        answers = [guarded.review(make_review(isvc(cached)))["response"] for _ in range(6)]
        cold = guarded.review(make_review(isvc("models:/fraud/2")))["response"]
        ready = guarded.client.get("/readyz")
        up = guarded.metric("modelpin_registry_up", registry="mlflow")
    finally:
        proxy.set_mode("pass")
    assert all(a["allowed"] for a in answers)
    warnings = [w for a in answers for w in a.get("warnings", [])]
    assert any("registry 'mlflow' answered 500" in w for w in warnings), warnings
    assert any("registry 'mlflow' is unavailable" in w for w in warnings), warnings
    assert cold["allowed"] is False and cold["status"]["code"] == 503
    assert "'models:/fraud/2'" in cold["status"]["message"]
    assert "registry 'mlflow'" in cold["status"]["message"]
    # the store URI in the registry's 500 body reaches the log, never an answer
    for text in [str(a) for a in answers] + [str(cold)]:
        assert "s3cret" not in text
    assert SECRET in guarded.process.tail(400)
    # a registry that is down leaves the webhook ready, and says so
    assert ready.status_code == 200
    detail = ready.json()["registries"]["mlflow"]
    assert detail["state"] in ("open", "half_open") and detail["last_failure"] == "server_error"
    assert up == 0
    _until(lambda: not guarded.review(make_review(isvc(cached)))["response"].get("warnings"))
    assert guarded.client.get("/readyz").json()["registries"]["mlflow"]["state"] == "closed"
    assert guarded.metric("modelpin_registry_up", registry="mlflow") == 1
