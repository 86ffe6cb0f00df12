"""Kubernetes connection settings taken from the ``kubernetes`` package, applied to httpx."""

from __future__ import annotations

from pathlib import Path

import httpx
from kubernetes.config.incluster_config import InClusterConfigLoader

from webhook.reconcile.kube import ConfigAuth, Kind


def test_kind_paths() -> None:
    kind = Kind.parse("serving.kserve.io/v1beta1/inferenceservices")
    assert kind.path() == "/apis/serving.kserve.io/v1beta1/inferenceservices"
    assert kind.path("ns", "x") == "/apis/serving.kserve.io/v1beta1/namespaces/ns/inferenceservices/x"
    assert Kind("", "v1", "events").path("ns") == "/api/v1/namespaces/ns/events"


async def test_a_rotated_service_account_token_is_picked_up(tmp_path: Path) -> None:
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("first")
    ca.write_text("not read by this test")
    from kubernetes import client

    cfg = client.Configuration()
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    loader = InClusterConfigLoader(token_filename=str(token), cert_filename=str(ca), environ=environ)
    loader.load_and_set(cfg)  # type: ignore[no-untyped-call]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(auth=ConfigAuth(cfg), transport=httpx.MockTransport(handler)) as http:
        await http.get("https://apiserver/api")
        token.write_text("second")  # the kubelet rotates the projected token in place
        loader.token_expires_at = loader.token_expires_at.min  # the loader's refresh period has passed
        await http.get("https://apiserver/api")
    assert seen == ["Bearer first", "Bearer second"]
