"""The reconciler's HTTP endpoints: MLflow deliveries, health, readiness and metrics.

The work itself (watch, compare, touch, lead) is ``reconcile.reconciler``;
this module only receives deliveries and reports state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.edge.bodies import TooLarge, read_within
from webhook.edge.cert_reload import CertReloader
from webhook.metrics import DELIVERIES
from webhook.reconcile.deliveries import Change, Malformed, Refused, Verifier
from webhook.reconcile.leadership import LeaderLease
from webhook.reconcile.loops import cancel_tasks
from webhook.reconcile.reconciler import Reconciler

log = logging.getLogger("modelpin.reconciler")


@dataclass(slots=True)
class ReconcilerState:
    reconciler: Reconciler
    lease: LeaderLease
    verifier: Verifier | None
    reloader: CertReloader | None = None
    pending: set[asyncio.Task[None]] = field(default_factory=set)
    max_body: int = 64 * 1024
    failed: str | None = None  # why the work loop died; the process then exits non-zero


def create_app(state: ReconcilerState) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lead = asyncio.create_task(state.reconciler.lead(state.lease), name="lead")
        lead.add_done_callback(functools.partial(_work_ended, state))
        tasks = [lead]
        if state.reloader is not None:
            tasks.append(
                asyncio.create_task(state.reloader.watch(state.reconciler.resolver.settings.cert_reload_seconds))
            )
        try:
            yield
        finally:
            await cancel_tasks(tasks)
            await state.reconciler.resolver.aclose()
            await state.reconciler.kube.aclose()

    app = FastAPI(title="modelpin reconciler", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def reply(code: int, **body: object) -> Response:
        return Response(orjson.dumps(body), status_code=code, media_type="application/json")

    @app.post("/mlflow/events")
    async def mlflow_events(request: Request) -> Response:
        if state.verifier is None:
            DELIVERIES.labels("disabled").inc()
            return reply(404, error="no MLflow webhook secret is configured")
        leader = state.lease.leader
        try:
            # headers first: an unsigned, stale or replayed delivery costs no body read
            state.verifier.check_headers(request.headers)
            try:
                body = await read_within(request, state.max_body)
            except TooLarge:
                DELIVERIES.labels("too_large").inc()
                return reply(413, error=f"body larger than {state.max_body} bytes")
            change = state.verifier.verify(request.headers, body, remember=leader)
        except Refused as exc:
            DELIVERIES.labels("refused").inc()
            return reply(401, error=str(exc))
        except Malformed as exc:
            DELIVERIES.labels("malformed").inc()
            return reply(400, error=str(exc))
        if not leader:
            # MLflow retries 503s with backoff, and the Service picks a replica anew each time;
            # a delivery that only ever meets the standby is caught by the next poll.
            DELIVERIES.labels("standby").inc()
            return reply(503, error="this replica is on standby")
        if change is None:
            DELIVERIES.labels("ignored").inc()
            return reply(200, status="ignored")
        DELIVERIES.labels("accepted").inc()
        task = asyncio.create_task(_apply(state.reconciler, change))
        state.pending.add(task)  # keep a reference until done, or the loop may drop it
        task.add_done_callback(state.pending.discard)
        return reply(202, status="accepted", model=change.model)

    @app.get("/healthz")
    async def healthz() -> Response:
        return reply(200, status="ok")

    @app.get("/readyz")
    async def readyz() -> Response:
        # A standby that reaches the apiserver is ready (so rollouts and disruption budgets behave);
        # a leader is ready once it has listed and compared every kind. Which one leads is in the
        # body, the metric modelpin_reconciler_leader and the Lease itself.
        r = state.reconciler
        body: dict[str, object] = {
            "reachable": state.lease.reachable,
            "leader": r.leading,
            "synced": r.is_synced(),
            "indexed": len(r.index),
            "holder": state.lease.holder,
        }
        if state.failed is not None:
            return reply(503, status=f"work loop died: {state.failed}", **body)
        if not state.lease.reachable:
            return reply(503, status="cannot reach the apiserver", **body)
        if r.leading and not r.is_synced():
            return reply(503, status="leading, not synced yet", **body)
        return reply(200, status="leading" if r.leading else "standing by", **body)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def _work_ended(state: ReconcilerState, task: asyncio.Task[None]) -> None:
    """The lead loop ends only by cancellation (shutdown); anything else must restart the process."""
    if task.cancelled():
        return
    exc = task.exception()
    state.failed = repr(exc) if exc is not None else "returned"
    log.critical("the reconciler's work loop died, exiting: %s", state.failed, exc_info=exc)
    # uvicorn shuts down on SIGTERM as on any other; cmd_reconcile turns state.failed into exit status 1
    signal.raise_signal(signal.SIGTERM)


async def _apply(reconciler: Reconciler, change: Change) -> None:
    try:
        touched = await reconciler.compare({change.model})
        log.info("%s.%s on %r: touched %d object(s)", change.entity, change.action, change.model, touched)
    except Exception:
        log.exception("handling %s.%s on %r failed", change.entity, change.action, change.model)
