"""uvicorn over TLS with the live SSLContext handed to the certificate reloader."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Protocol

import uvicorn
from fastapi import FastAPI

from webhook.config import Settings
from webhook.edge.cert_reload import CertReloader
from webhook.edge.webhook_app import ServerState, create_app
from webhook.registry.resolver import Resolver


class HasReloader(Protocol):
    reloader: CertReloader | None


def run(settings: Settings, resolver: Resolver, *, host: str, port: int, cert: Path, key: Path, log_level: str) -> None:
    state = ServerState(resolver=resolver)
    serve_app(create_app(state), state, host=host, port=port, cert=cert, key=key, log_level=log_level)


def serve_app(app: FastAPI, state: HasReloader, *, host: str, port: int, cert: Path, key: Path, log_level: str) -> None:
    """Serve ``app`` over HTTPS only; ``state.reloader`` gets the live context before startup."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        http="httptools",
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
    state.reloader = CertReloader(config.ssl, cert, key)
    uvicorn.Server(config).run()
