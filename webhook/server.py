"""uvicorn over TLS with the live SSLContext handed to the certificate reloader."""

from __future__ import annotations

import ssl
from pathlib import Path

import uvicorn

from webhook.app import ServerState, create_app
from webhook.config import Settings
from webhook.resolver import Resolver
from webhook.tlsreload import CertReloader


def run(
    settings: Settings,
    resolver: Resolver,
    *,
    host: str,
    port: int,
    cert: Path,
    key: Path,
    log_level: str,
) -> None:
    state = ServerState(resolver=resolver)
    app = create_app(state)
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
