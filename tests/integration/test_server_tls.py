"""The webhook's TLS, checked with Python's ``ssl`` against a real ``modelpin serve``.

Each refusal is paired with a control: the same client settings against a
permissive server on the same certificate succeed, so a refusal is the
webhook's doing and not this machine's OpenSSL refusing to speak old TLS.
"""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.catalog import Catalog
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import ModelpinServer, modelpin_config, post_as
from tests.support.pki import ClientPair, client_pair
from tests.support.reviews import fixture

pytestmark = pytest.mark.integration

CBC_SHA1 = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> ClientPair:
    return client_pair(tmp_path_factory.mktemp("client-pki"))


@pytest.fixture(scope="module")
def mtls_server(
    mlflow_server: MlflowServer,
    catalog: Catalog,
    ca_dir: Path,
    client: ClientPair,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ModelpinServer]:
    server = ModelpinServer(
        tmp_path_factory.mktemp("mtls"),
        modelpin_config(mlflow_server.url),
        ca_dir,
        extra_args=["--client-ca", str(client.ca)],
    )
    yield server
    server.stop()


def handshake(port: int, ca: Path, *, maximum: ssl.TLSVersion, ciphers: str | None = None) -> str:
    """The negotiated version, or raises ``ssl.SSLError``/``OSError``."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # old versions are the point here
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = maximum
    # security level 0 lets this client offer TLS 1.0/1.1 and SHA-1 suites at all
    ctx.set_ciphers(f"{ciphers or 'DEFAULT'}:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


@pytest.fixture(scope="module")
def permissive(mtls_server: ModelpinServer) -> Iterator[int]:
    """A server on the same certificate that accepts TLS 1.0+ and every suite: the control."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.load_cert_chain(mtls_server.cert, mtls_server.key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    listener.close()


def test_tls_1_1_is_refused(mtls_server: ModelpinServer, permissive: int) -> None:
    assert handshake(permissive, mtls_server.ca, maximum=ssl.TLSVersion.TLSv1_1) == "TLSv1.1"
    with pytest.raises((ssl.SSLError, OSError)):
        handshake(mtls_server.port, mtls_server.ca, maximum=ssl.TLSVersion.TLSv1_1)


def test_cbc_sha1_suites_are_refused(mtls_server: ModelpinServer, permissive: int) -> None:
    assert handshake(permissive, mtls_server.ca, maximum=ssl.TLSVersion.TLSv1_2, ciphers=CBC_SHA1) == "TLSv1.2"
    with pytest.raises((ssl.SSLError, OSError)):
        handshake(mtls_server.port, mtls_server.ca, maximum=ssl.TLSVersion.TLSv1_2, ciphers=CBC_SHA1)


def test_tls_1_2_with_aead_and_tls_1_3_are_served(mtls_server: ModelpinServer) -> None:
    assert handshake(mtls_server.port, mtls_server.ca, maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE+AESGCM") == (
        "TLSv1.2"
    )
    assert handshake(mtls_server.port, mtls_server.ca, maximum=ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


def test_mutate_requires_a_client_certificate(mtls_server: ModelpinServer, client: ClientPair) -> None:
    refused = post_as(mtls_server, fixture("isvc-canary.yaml"), None)
    assert refused.status_code == 403
    assert "client certificate" in refused.json()["error"]
    answered = post_as(mtls_server, fixture("isvc-canary.yaml"), (str(client.cert), str(client.key)))
    assert answered.status_code == 200
    assert answered.json()["response"]["allowed"] is True


def test_a_certificate_from_another_ca_fails_the_handshake(mtls_server: ModelpinServer, tmp_path: Path) -> None:
    stranger = client_pair(tmp_path / "stranger")
    with pytest.raises(httpx.TransportError):
        post_as(mtls_server, fixture("isvc-canary.yaml"), (str(stranger.cert), str(stranger.key)))


def test_probes_and_metrics_need_no_client_certificate(mtls_server: ModelpinServer) -> None:
    ctx = ssl.create_default_context(cafile=str(mtls_server.ca))
    with httpx.Client(base_url=mtls_server.url, verify=ctx, timeout=10) as c:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert c.get(path).status_code == 200, path
