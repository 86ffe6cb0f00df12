"""uvicorn over TLS with the live SSLContext handed to the certificate reloader.

TLS is set here, not left to library defaults: TLS 1.2 at least, and for
TLS 1.2 only ECDHE suites with AEAD ciphers (older uvicorn releases allowed
CBC-SHA1). With a client CA, a client certificate is checked at the handshake
and its presence recorded in the request scope (the ASGI TLS extension), so
that ``/mutate`` can require one while kubelet's probes and Prometheus, which
present none, still reach ``/healthz``, ``/readyz`` and ``/metrics``. With
client names, ``/mutate`` also requires the certificate to name one of them:
a cluster CA signs every kubelet's certificate too.

uvicorn bounds idle keep-alive connections but not the time to send a request:
a client trickling a header byte at a time holds its connection forever. The
protocol here closes a connection whose request is not read whole within the
read timeout, and refuses request lines and headers over ``MAX_HEADER_BYTES``
(httptools, unlike h11, sets no such limit).
"""

from __future__ import annotations

import asyncio
import cProfile
import logging
import os
import signal
import ssl
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import orjson
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from webhook.config import Settings
from webhook.edge.cert_reload import CertReloader
from webhook.edge.webhook_app import ServerState, create_app
from webhook.registry.resolver import Resolver

log = logging.getLogger("modelpin.tls")

# TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 suites are all modern and not set by this string).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!DSS"
# The request line and headers together; an AdmissionReview request needs a few hundred bytes.
MAX_HEADER_BYTES = 64 * 1024
# Routes that answer only a named client (the others serve probes and scrapes).
NAMED_CLIENT_PATHS = frozenset({"/mutate"})
_DEFAULTS = Settings.model_fields
# A file to write a cProfile of the serving process to: SIGUSR1 starts profiling, SIGUSR2
# stops it and writes the file (tests/benchmarks/dryrun.py --profile); unset, nothing is installed.
PROFILE_ENV = "MODELPIN_PROFILE"


class HasReloader(Protocol):
    reloader: CertReloader | None


def harden(context: ssl.SSLContext, client_ca: Path | None) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    if client_ca is not None:
        # OPTIONAL: a presented certificate must verify against the CA, and its absence is
        # refused per route by the app (probes and scrapes present none).
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_OPTIONAL


def peer_names(peer: Mapping[str, Any] | None) -> frozenset[str]:
    """The subject CNs and DNS SANs of a verified peer certificate (``SSLSocket.getpeercert()``)."""
    if not peer:
        return frozenset()
    names = {value for rdn in peer.get("subject", ()) for key, value in rdn if key == "commonName"}
    names.update(value for kind, value in peer.get("subjectAltName", ()) if kind == "DNS")
    return frozenset(n.lower() for n in names)


class CoalescingTransport(asyncio.Transport):
    """A connection's transport whose writes within one turn of the loop leave as one.

    uvicorn writes a response's status line and headers, then its body, each at once: over
    TLS, two records in two segments, and the apiserver's reader wakes for the headers only
    to wait again for the body. Joined, an answer is one record, one send, one wake-up.
    """

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._inner = inner
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        if not self._inner.is_closing():
            self._inner.write(data)

    def close(self) -> None:
        self._flush()
        self._inner.close()

    def abort(self) -> None:
        self._pending = []
        self._inner.abort()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size() + sum(map(len, self._pending))

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def write_eof(self) -> None:
        self._flush()
        self._inner.write_eof()


class TLSScopeProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, adding the ASGI TLS extension and a deadline to read each request."""

    read_timeout: ClassVar[float] = _DEFAULTS["request_read_timeout_seconds"].default
    _tls: dict[object, object]
    _deadline: asyncio.TimerHandle | None = None
    _header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)
        ssl_object = transport.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self._tls = {
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(peer)] if peer else [],
            "client_cert_error": None,  # a certificate that does not verify fails the handshake instead
            "tls_version": ssl_object.version() if ssl_object is not None else None,
            # not in the ASGI extension: the verified certificate's names, taken once per connection
            "client_names": peer_names(ssl_object.getpeercert()) if peer else frozenset(),
        }
        self._arm()  # the first request, whose first byte may never come

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"tls": self._tls}
        self._header_bytes = 0
        if self._deadline is None:  # the first request keeps the deadline armed when the connection came
            self._arm()  # a later request on a kept-alive connection gets the same time

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._disarm()
            body = f"request line and headers over {MAX_HEADER_BYTES} bytes".encode()
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
            )
            self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _read_timed_out(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
            log.warning("closed %s: no whole request within %.1f s", client, self.read_timeout)
            self.transport.close()


def protocol_class(read_timeout: float) -> type[TLSScopeProtocol]:
    """The protocol uvicorn instantiates per connection, with this server's read timeout."""
    return type("ModelpinHTTPProtocol", (TLSScopeProtocol,), {"read_timeout": read_timeout})


class ClientNameCheck:
    """ASGI middleware: on ``NAMED_CLIENT_PATHS``, a client certificate must name one of ``names``.

    A request with no certificate passes to the app, which refuses it for having none; this
    check answers only for a certificate the CA signed whose CN and DNS SANs are all unknown.
    """

    def __init__(self, app: ASGIApp, names: Iterable[str]) -> None:
        self.app = app
        self.names = frozenset(n.lower() for n in names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in NAMED_CLIENT_PATHS:
            tls = scope.get("extensions", {}).get("tls") or {}
            presented: frozenset[str] = tls.get("client_names", frozenset())
            if tls.get("client_cert_chain") and not presented & self.names:
                shown = ", ".join(sorted(presented)) or "none"
                reason = (
                    f"the client certificate names {shown}; {scope['path']} answers only "
                    f"{', '.join(sorted(self.names))} (tls_client_names)"
                )
                body = orjson.dumps({"error": reason})
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def profile_on_signals(path: str) -> None:
    """Profile the process between SIGUSR1 and SIGUSR2, writing the stats to ``path`` on SIGUSR2."""
    profiler = cProfile.Profile()

    def start(signum: int, frame: object) -> None:
        profiler.enable()

    def stop(signum: int, frame: object) -> None:
        profiler.disable()
        profiler.dump_stats(path)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


def run(settings: Settings, resolver: Resolver, *, host: str, port: int, cert: Path, key: Path, log_level: str) -> None:
    if settings.tls_client_names and settings.tls_client_ca is None:
        raise SystemExit("modelpin serve: tls_client_names needs a client CA (--client-ca or tls_client_ca)")
    state = ServerState(resolver=resolver)
    if profile := os.environ.get(PROFILE_ENV):
        profile_on_signals(profile)
    build_server(
        create_app(state),
        state,
        host=host,
        port=port,
        cert=cert,
        key=key,
        log_level=log_level,
        client_ca=settings.tls_client_ca,
        client_names=settings.tls_client_names,
        limit_concurrency=settings.limit_concurrency,
        read_timeout=settings.request_read_timeout_seconds,
    ).run()


def build_server(
    app: ASGIApp,
    state: HasReloader,
    *,
    host: str,
    port: int,
    cert: Path,
    key: Path,
    log_level: str,
    client_ca: Path | None = None,
    client_names: Sequence[str] = (),
    limit_concurrency: int | None = _DEFAULTS["limit_concurrency"].default,
    read_timeout: float = _DEFAULTS["request_read_timeout_seconds"].default,
) -> uvicorn.Server:
    """An HTTPS-only server for ``app``; ``state.reloader`` gets the live context. ``run()`` serves it
    until a signal stops it."""
    config = uvicorn.Config(
        ClientNameCheck(app, client_names) if client_names else app,
        host=host,
        port=port,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        http=protocol_class(read_timeout),
        loop="uvloop",
        lifespan="on",
        # modelpin is reached directly (apiserver, probes, scrapes): no X-Forwarded-* to honour
        proxy_headers=False,
        access_log=False,
        log_level=log_level,
        server_header=False,
        backlog=2048,
        # above it, uvicorn answers 503 at once rather than queueing without bound
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=30,
    )
    config.load()
    if not isinstance(config.ssl, ssl.SSLContext):
        raise RuntimeError("uvicorn did not build a TLS context")
    harden(config.ssl, client_ca)
    state.reloader = CertReloader(config.ssl, cert, key)
    return uvicorn.Server(config)
