"""When the registry is down or stalls, and when certificates rotate.

The registry sits behind a TCP forwarder that the test cuts or stalls; the
mlflow server behind it stays real.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.catalog import Catalog
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
