"""HTTP at the edge: the admission core behind ``POST /mutate``, FastAPI for the rest.

The transport checks what controller-runtime checks (Content-Type, body size)
and maps the two error families: not an AdmissionReview is HTTP 400, an
object modelpin cannot admit is a denial inside a 200.

``POST /mutate`` is answered by plain ASGI ahead of FastAPI: it is on the
apiserver's path for every admitted object, and FastAPI's layers (middleware
stack, router, dependency solving, response classes) cost it more than the
decision itself. Probes and scrapes go through FastAPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from webhook import metrics
from webhook.admission.decision import admit
from webhook.admission.review import BadRequest, denied, outcome, parse_review, review
from webhook.edge.bodies import TooLarge, receive_within
from webhook.edge.cert_reload import CertReloader
from webhook.registry.resolver import Resolver
from webhook.templating.causes import Cause

log = logging.getLogger("modelpin")

JSON = "application/json"
MUTATE = "/mutate"


@dataclass(slots=True)
class ServerState:
    resolver: Resolver
    reloader: CertReloader | None = None


def _error(status: int, reason: str) -> tuple[int, bytes]:
    return status, orjson.dumps({"error": reason})


def _client_certified(scope: Scope) -> bool:
    """Whether the connection presented a client certificate (verified against the CA at the handshake)."""
    tls = scope.get("extensions", {}).get("tls") or {}
    return bool(tls.get("client_cert_chain"))


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | tuple[int, bytes]:
    """The body, or the (status, body) of the error that refuses it."""
    ctype = next((value for name, value in scope["headers"] if name == b"content-type"), b"")
    media = ctype.split(b";")[0].strip().lower().decode("latin-1")
    if media != JSON:
        return _error(400, f"Content-Type must be {JSON}, got {media or 'none'!r}")
    try:
        return await receive_within(scope, receive, limit)
    except TooLarge as exc:
        return _error(413, str(exc))
    except ClientDisconnect:
        # the client's doing, and nobody is left to answer: one line, not a traceback
        client = scope.get("client")
        log.warning("client %s disconnected before sending its whole body", client[0] if client else "?")
        return _error(400, "client disconnected before sending its whole body")


async def answer(state: ServerState, scope: Scope, receive: Receive) -> tuple[int, bytes]:
    """The (status, body) answering one ``POST /mutate``."""
    settings = state.resolver.settings
    if settings.tls_client_ca is not None and not _client_certified(scope):
        # Answers carry artifact URIs and versions: only the apiserver may ask (README: trust model).
        metrics.ADMISSION_OUTCOME["bad_request"].observe(0)
        return _error(403, "a client certificate signed by the configured client CA is required")
    body = await read_body(scope, receive, settings.max_body_bytes)
    if isinstance(body, tuple):
        metrics.ADMISSION_OUTCOME["bad_request"].observe(0)
        return body
    try:
        req = parse_review(body)
    except BadRequest as exc:
        metrics.ADMISSION_OUTCOME["bad_request"].observe(0)
        return _error(400, str(exc))
    started = time.perf_counter()
    try:
        admission = await admit(req, resolver=state.resolver, settings=settings)
    except Exception as exc:  # never an HTTP 500 for a valid review: deny and say why
        log.exception("admission failed for uid %s", req["uid"])
        metrics.ADMISSION_OUTCOME["internal_error"].observe(0)
        response = denied(Cause.INTERNAL, f"modelpin failed internally: {type(exc).__name__}")
    else:
        # the decision's time and its fields' results, recorded here: admission itself is request in, response out
        response = admission.response
        metrics.ADMISSION_OUTCOME[outcome(req["operation"], response)].observe(time.perf_counter() - started)
        for result, fields in admission.results.items():
            metrics.RESOLUTION_RESULT[result].inc(fields)
    return 200, review(req["uid"], response)


class WebhookApp:
    """ASGI: ``POST /mutate`` answered here, every other request passed to ``api`` (FastAPI)."""

    def __init__(self, state: ServerState, api: FastAPI) -> None:
        self.state = state
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != MUTATE or scope["method"] != "POST":
            await self.api(scope, receive, send)
            return
        status, body = await answer(self.state, scope, receive)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_app(state: ServerState) -> WebhookApp:
    settings = state.resolver.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watcher = None
        if state.reloader is not None:
            watcher = asyncio.create_task(state.reloader.watch(settings.cert_reload_seconds))
        # Everything alive now (imports, settings, the app) lives as long as the process:
        # freezing it keeps the collector from re-scanning it during reviews.
        gc.collect()
        gc.freeze()
        metrics.READY.set(1)
        try:
            yield
        finally:
            metrics.READY.set(0)
            if watcher is not None:
                watcher.cancel()
            await state.resolver.aclose()

    app = FastAPI(title="modelpin", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.post(MUTATE)
    async def mutate(request: Request) -> Response:
        # reached only when this app is called without WebhookApp; it gives other methods their 405
        status, body = await answer(state, request.scope, request.receive)
        return Response(body, status_code=status, media_type=JSON)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @app.get("/readyz")
    async def readyz() -> Response:
        problems = [] if state.reloader is None else state.reloader.problems()
        # A registry that is down is reported, never made a reason to be unready: the webhook
        # still answers (from the cache, or with 503 denials naming the registry), and an
        # unready replica would only move the same answers to the apiserver's failurePolicy.
        registries = {name: h.as_dict() for name, h in state.resolver.health_all().items()}
        if problems:
            body = {"error": "; ".join(problems), "registries": registries}
            return Response(orjson.dumps(body), status_code=503, media_type=JSON)
        return Response(orjson.dumps({"status": "ready", "registries": registries}), media_type=JSON)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return WebhookApp(state, app)
