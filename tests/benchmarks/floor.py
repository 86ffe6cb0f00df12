"""The floor of a webhook's cost at the apiserver: parse the review, answer a fixed patch.

    python -m tests.benchmarks.floor PORT CERT KEY PATCHES [--client-ca CA]

A bare ASGI app on uvicorn (httptools, uvloop), TLS hardened exactly as ``modelpin serve``
hardens it (``webhook.edge.server.harden``: the same ciphers, minimum version and optional
client-certificate verification). Each review is parsed whole with orjson and answered with
the patch ``PATCHES`` (a JSON file: the object's ``OBJECT`` label -> base64 JSONPatch)
holds for that object: modelpin's own answer to it, captured beforehand, so the apiserver
applies and validates the same change behind either webhook. ``GET /stats`` counts the
connections opened and the reviews answered, to compare connection reuse.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from webhook.edge.server import harden

OBJECT = "modelpin.io/bench-object"  # the label naming the patch to answer (tests/benchmarks/dryrun.py)

STATS = {"connections": 0, "reviews": 0}


class CountingProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        STATS["connections"] += 1
        super().connection_made(transport)


class Floor:
    def __init__(self, patches: dict[str, str]) -> None:
        self.patches = patches

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        if scope["path"] == "/stats":
            await _send(send, orjson.dumps(STATS))
            return
        request: dict[str, Any] = orjson.loads(b"".join(chunks))["request"]
        name = request["object"]["metadata"]["labels"][OBJECT]
        STATS["reviews"] += 1
        response = {"uid": request["uid"], "allowed": True, "patchType": "JSONPatch", "patch": self.patches[name]}
        body = orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
        await _send(send, body)


async def _send(send: Send, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("cert", type=Path)
    ap.add_argument("key", type=Path)
    ap.add_argument("patches", type=Path)
    ap.add_argument("--client-ca", type=Path)
    args = ap.parse_args(argv)
    config = uvicorn.Config(
        Floor(orjson.loads(args.patches.read_bytes())),
        host="127.0.0.1",
        port=args.port,
        ssl_certfile=str(args.cert),
        ssl_keyfile=str(args.key),
        http=CountingProtocol,
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        backlog=2048,
    )
    config.load()
    if not isinstance(config.ssl, ssl.SSLContext):
        raise RuntimeError("uvicorn did not build a TLS context")
    harden(config.ssl, args.client_ca)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
