"""The HTTPS server itself, on a real socket: read deadline, header limit, concurrency limit, client names."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import Response

from webhook.edge import server as edge
from webhook.edge.cert_reload import CertReloader
from webhook.tools import certs
from webhook.tools.processes import free_port

API_SERVER = "kube-apiserver-webhook-client"


@dataclass
class State:
    reloader: CertReloader | None = None


@dataclass
class Running:
    url: str
    port: int
    ca: Path
    pki: Path


def tiny_app() -> FastAPI:
    app = FastAPI()

    @app.post("/mutate")
    async def mutate() -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app


@contextmanager
def serving(tmp_path: Path, **options: Any) -> Iterator[Running]:
    pki = tmp_path / "pki"
    bundle = certs.issue(pki, ["localhost", "127.0.0.1"])
    port = free_port()
    server = edge.build_server(
        tiny_app(),
        State(),
        host="127.0.0.1",
        port=port,
        cert=bundle.cert,
        key=bundle.key,
        log_level="warning",
        **options,
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield Running(f"https://127.0.0.1:{port}", port, bundle.ca_cert, pki)
    finally:
        server.should_exit = True
        thread.join(10)


def tls_socket(running: Running, cert: tuple[Path, Path] | None = None) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(running.ca))
    if cert is not None:
        context.load_cert_chain(*cert)
    raw = socket.create_connection(("127.0.0.1", running.port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def closed_after(sock: ssl.SSLSocket, trickle: bytes, every: float, limit: float) -> float:
    """Send ``trickle`` a byte at a time until the server closes; seconds until it did."""
    start = time.monotonic()
    sock.settimeout(every)
    for i in range(len(trickle)):
        try:
            sock.sendall(trickle[i : i + 1])
            if sock.recv(1024) == b"":
                return time.monotonic() - start
        except TimeoutError:
            pass
        except (ConnectionError, ssl.SSLError):
            return time.monotonic() - start
        assert time.monotonic() - start < limit, "the connection was never closed"
    raise AssertionError("ran out of bytes to trickle")


def test_a_trickled_request_is_closed_after_the_read_timeout(tmp_path: Path) -> None:
    with serving(tmp_path, read_timeout=0.6) as running, tls_socket(running) as sock:
        headers = b"POST /mutate HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000
        elapsed = closed_after(sock, headers, every=0.05, limit=5)
        # closed at the deadline, though a byte came every 50 ms
        assert 0.5 <= elapsed < 2.0


def test_a_silent_connection_is_closed_after_the_read_timeout(tmp_path: Path) -> None:
    with serving(tmp_path, read_timeout=0.5) as running, tls_socket(running) as sock:
        start = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(1024) == b""
        assert 0.4 <= time.monotonic() - start < 2.0


def test_a_whole_request_is_answered_and_the_next_one_on_the_connection_too(tmp_path: Path) -> None:
    with serving(tmp_path, read_timeout=0.5) as running:
        verify = ssl.create_default_context(cafile=str(running.ca))
        with httpx.Client(base_url=running.url, verify=verify) as client:
            assert client.post("/mutate", content=b"{}").status_code == 200
            time.sleep(0.8)  # idle past the read timeout: keep-alive, not a request being read
            assert client.post("/mutate", content=b"{}").status_code == 200


def test_an_answer_leaves_as_one_tls_record(tmp_path: Path) -> None:
    # SSLSocket.recv returns one record's data at most: headers and body in one read means one record
    with serving(tmp_path) as running, tls_socket(running) as sock:
        sock.sendall(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        time.sleep(0.3)  # all of the answer has arrived
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 OK\r\n")
        assert first.endswith(b'\r\n\r\n{"ok":true}')


def test_writes_within_one_loop_turn_are_joined_and_a_close_sends_them_first() -> None:
    sent: list[bytes] = []

    class Inner(asyncio.Transport):
        def write(self, data: Any) -> None:
            sent.append(bytes(data))

        def close(self) -> None:
            sent.append(b"<closed>")

        def is_closing(self) -> bool:
            return False

    async def go() -> None:
        transport = edge.CoalescingTransport(Inner(), asyncio.get_running_loop())
        transport.write(b"head ")
        transport.write(b"body")
        assert sent == []
        await asyncio.sleep(0)
        assert sent == [b"head body"]
        transport.write(b"431")
        transport.close()
        assert sent == [b"head body", b"431", b"<closed>"]
        await asyncio.sleep(0)
        assert sent == [b"head body", b"431", b"<closed>"]

    asyncio.run(go())


def test_oversized_headers_are_refused_with_431(tmp_path: Path) -> None:
    with serving(tmp_path) as running, tls_socket(running) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for i in range(20):
            sock.sendall(f"X-Big-{i}: ".encode() + b"b" * 8000 + b"\r\n")
        sock.sendall(b"\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert b"over 65536 bytes" in answer


def test_connections_above_the_concurrency_limit_get_503(tmp_path: Path) -> None:
    with serving(tmp_path, limit_concurrency=2) as running:
        with httpx.Client(base_url=running.url, verify=ssl.create_default_context(cafile=str(running.ca))) as alone:
            assert alone.get("/healthz").status_code == 200
        with tls_socket(running) as idle, tls_socket(running) as busy:
            idle.sendall(b"")  # held open: one connection of the two allowed
            busy.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert busy.recv(4096).startswith(b"HTTP/1.1 503 ")


def test_client_names_are_matched_on_mutate_only(tmp_path: Path) -> None:
    client_ca = tmp_path / "clients"
    right = certs.issue_client(client_ca, API_SERVER, stem="right")
    by_san = certs.issue_client(client_ca, "someone", [API_SERVER.upper()], stem="san")
    wrong = certs.issue_client(client_ca, "kubelet-node-1", ["node-1.example"], stem="wrong")
    with serving(tmp_path / "s", client_ca=client_ca / "ca.crt", client_names=[API_SERVER]) as running:

        def post(cert: tuple[Path, Path] | None, path: str = "/mutate") -> httpx.Response:
            context = ssl.create_default_context(cafile=str(running.ca))
            if cert is not None:
                context.load_cert_chain(*cert)
            with httpx.Client(base_url=running.url, verify=context) as client:
                if path == "/mutate":
                    return client.post(path, content=b"{}")
                return client.get(path)

        assert post(right).status_code == 200
        assert post(by_san).status_code == 200  # a DNS SAN counts, case aside
        refused = post(wrong)
        assert refused.status_code == 403
        assert refused.json() == {
            "error": "the client certificate names kubelet-node-1, node-1.example; /mutate answers only "
            f"{API_SERVER} (tls_client_names)"
        }
        assert post(wrong, "/healthz").status_code == 200  # probes and scrapes stay open
        # no certificate: left to the app (the webhook's own 403 when a client CA is set)
        assert post(None).status_code == 200


def test_names_without_a_client_ca_refuse_to_start(tmp_path: Path) -> None:
    from tests.support.fakes import make_settings

    settings = make_settings(tls_client_names=[API_SERVER])
    with pytest.raises(SystemExit, match="tls_client_names needs a client CA"):
        edge.run(settings, None, host="127.0.0.1", port=0, cert=tmp_path, key=tmp_path, log_level="warning")  # type: ignore[arg-type]


def test_peer_names() -> None:
    peer = {
        "subject": ((("organizationName", "system:masters"),), (("commonName", "Kube-APIServer"),)),
        "subjectAltName": (("DNS", "api.example"), ("IP Address", "10.0.0.1")),
    }
    assert edge.peer_names(peer) == {"kube-apiserver", "api.example"}
    assert edge.peer_names(None) == frozenset()
