"""The apiserver calls through kubernetes_asyncio, against a small real HTTP server (aiohttp.web)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader

from webhook.reconcile.kube import ApiException, Kind, Kube, describe, reason
from webhook.tools import certs

KIND = Kind.parse("serving.kserve.io/v1beta1/inferenceservices")
LEASE = {
    "apiVersion": "coordination.k8s.io/v1",
    "kind": "Lease",
    "metadata": {"name": "l", "namespace": "ns", "resourceVersion": "7"},
    "spec": {"holderIdentity": "a", "leaseDurationSeconds": 4, "renewTime": "2025-01-01T00:00:00.000000Z"},
}


class Server:
    def __init__(self) -> None:
        self.auth: list[str] = []
        self.queries: list[dict[str, str]] = []
        self.stall = False

    async def lease(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization", ""))
        if self.stall:
            await asyncio.sleep(2)
        return web.json_response(LEASE)

    async def objects(self, request: web.Request) -> web.Response:
        self.queries.append(dict(request.query))
        if request.query.get("watch"):
            resp = web.StreamResponse()
            await resp.prepare(request)
            await resp.write(b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"12"}}}\n')
            gone = b'{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}\n'
            await resp.write(gone)
            return resp
        page = request.query.get("continue")
        items = [{"metadata": {"name": f"o{i}", "namespace": "ns"}} for i in range(2)]
        meta = {"resourceVersion": "11"} if page else {"resourceVersion": "11", "continue": "next"}
        return web.json_response({"items": items, "metadata": meta})


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    state = Server()
    app = web.Application()
    app.router.add_get("/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", state.lease)
    app.router.add_get("/apis/serving.kserve.io/v1beta1/inferenceservices", state.objects)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield state, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_rotated_service_account_token_is_picked_up(tmp_path: Path, server: tuple[Server, str]) -> None:
    state, url = server
    certs.ensure_ca(tmp_path / "ca")
    token, ca = tmp_path / "token", tmp_path / "ca" / "ca.crt"
    token.write_text("first")
    cfg = k8s.Configuration()
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    loader = InClusterConfigLoader(token_filename=str(token), cert_filename=str(ca), environ=environ)
    loader.load_and_set(cfg)
    cfg.host = url  # the loader points at the in-cluster address; this test's apiserver is local
    kube = Kube(cfg, timeout=5)
    try:
        await kube.get_lease("ns", "l")
        token.write_text("second")  # the kubelet rotates the projected token in place
        loader.token_expires_at = loader.token_expires_at.min  # the loader's refresh period has passed
        await kube.get_lease("ns", "l")
    finally:
        await kube.aclose()
    assert state.auth == ["Bearer first", "Bearer second"]


async def test_every_call_has_a_deadline(server: tuple[Server, str]) -> None:
    state, url = server
    state.stall = True
    kube = Kube(k8s.Configuration(host=url), timeout=0.3)
    try:
        with pytest.raises(asyncio.TimeoutError) as caught:
            await kube.get_lease("ns", "l")
    finally:
        await kube.aclose()
    assert reason(caught.value) == "timeout"


async def test_lists_are_paginated_and_watches_raise_gone(server: tuple[Server, str]) -> None:
    state, url = server
    kube = Kube(k8s.Configuration(host=url), timeout=5, page_size=2)
    try:
        pages = [page async for page in kube.list_pages(KIND, "modelpin.io/managed=true")]
        assert [(len(items), version) for items, version in pages] == [(2, "11"), (2, "11")]
        assert state.queries[0]["limit"] == "2" and state.queries[1]["continue"] == "next"
        seen: list[Any] = []
        with pytest.raises(ApiException) as caught:
            async for event in kube.watch(KIND, "modelpin.io/managed=true", "11"):
                seen.append(event["type"])
        assert seen == ["BOOKMARK"] and caught.value.status == 410
        watch_query = state.queries[-1]
        assert watch_query["allowWatchBookmarks"].lower() == "true" and watch_query["resourceVersion"] == "11"
    finally:
        await kube.aclose()


async def test_a_refused_connection_is_a_transport_error_with_its_cause() -> None:
    kube = Kube(k8s.Configuration(host="http://127.0.0.1:9"), timeout=2)
    try:
        with pytest.raises(aiohttp.ClientConnectionError) as caught:
            await kube.get_lease("ns", "l")
    finally:
        await kube.aclose()
    assert reason(caught.value) == "connection"
    assert "ClientConnectorError" in describe(caught.value) and "\n" not in describe(caught.value)
