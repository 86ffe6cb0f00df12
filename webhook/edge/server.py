"""uvicorn over TLS with the live SSLContext handed to the certificate reloader.

TLS is set here, not left to library defaults: TLS 1.2 at least, and for
TLS 1.2 only ECDHE suites with AEAD ciphers (older uvicorn releases allowed
CBC-SHA1). With a client CA, a client certificate is checked at the handshake
and its presence recorded in the request scope (the ASGI TLS extension), so
that ``/mutate`` can require one while kubelet's probes and Prometheus, which
present none, still reach ``/healthz``, ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Protocol

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from webhook.config import Settings
from webhook.edge.cert_reload import CertReloader
from webhook.edge.webhook_app import ServerState, create_app
from webhook.registry.resolver import Resolver

# TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 suites are all modern and not set by this string).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!DSS"


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


class TLSScopeProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, adding the ASGI TLS extension (client certificate, version) to each scope."""

    _tls: dict[object, object]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        peer = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self._tls = {
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(peer)] if peer else [],
            "client_cert_error": None,  # a certificate that does not verify fails the handshake instead
            "tls_version": ssl_object.version() if ssl_object is not None else None,
        }

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {"tls": self._tls}


def run(settings: Settings, resolver: Resolver, *, host: str, port: int, cert: Path, key: Path, log_level: str) -> None:
    state = ServerState(resolver=resolver)
    serve_app(
        create_app(state),
        state,
        host=host,
        port=port,
        cert=cert,
        key=key,
        log_level=log_level,
        client_ca=settings.tls_client_ca,
    )


def serve_app(
    app: FastAPI,
    state: HasReloader,
    *,
    host: str,
    port: int,
    cert: Path,
    key: Path,
    log_level: str,
    client_ca: Path | None = None,
) -> None:
    """Serve ``app`` over HTTPS only; ``state.reloader`` gets the live context before startup."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        http=TLSScopeProtocol,
        loop="uvloop",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        server_header=False,
        backlog=2048,
        timeout_keep_alive=30,
    )
    config.load()
    if not isinstance(config.ssl, ssl.SSLContext):
        raise RuntimeError("uvicorn did not build a TLS context")
    harden(config.ssl, client_ca)
    state.reloader = CertReloader(config.ssl, cert, key)
    uvicorn.Server(config).run()
