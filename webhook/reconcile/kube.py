"""A small async Kubernetes API client: list, watch, merge-patch, events, leases.

The official client is synchronous; the reconciler's watches, touches and
lease renewals share one event loop, so it talks to the apiserver with httpx
and takes only the connection settings (kubeconfig or in-cluster) from the
``kubernetes`` package.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import AsyncIterator, Generator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson


@dataclass(frozen=True, slots=True)
class Kind:
    group: str
    version: str
    plural: str

    @classmethod
    def parse(cls, text: str) -> Kind:
        """``group/version/plural``, e.g. ``serving.kserve.io/v1beta1/inferenceservices``."""
        group, version, plural = text.rsplit("/", 2)
        return cls(group, version, plural)

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"{status}: {message}")


def client_from_config(kubeconfig: str | None = None) -> httpx.AsyncClient:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    cfg = k8s_client.Configuration()
    if kubeconfig:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    context = ssl.create_default_context(cafile=cfg.ssl_ca_cert) if cfg.ssl_ca_cert else ssl.create_default_context()
    if cfg.cert_file and cfg.key_file:
        context.load_cert_chain(cfg.cert_file, cfg.key_file)
    return httpx.AsyncClient(
        base_url=cfg.host,
        verify=context,
        auth=ConfigAuth(cfg),
        headers={"Accept": "application/json"},
        timeout=httpx.Timeout(30, read=None),
    )


class ConfigAuth(httpx.Auth):
    """The bearer token of a ``kubernetes`` client Configuration, kept fresh as that client does.

    The kubelet rotates a pod's service-account token in place; the official
    client re-reads it through ``refresh_api_key_hook`` (at most once a minute),
    and a reconciler that runs for weeks must too.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.cfg.refresh_api_key_hook is not None:
            self.cfg.refresh_api_key_hook(self.cfg)
        token = self.cfg.api_key.get("authorization") or self.cfg.api_key.get("BearerToken")
        if token:
            value = token[len("bearer ") :] if token.lower().startswith("bearer ") else token
            request.headers["Authorization"] = f"Bearer {value}"
        yield request


class Kube:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def _json(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise ApiError(response.status_code, response.text[:500])
        body: dict[str, Any] = orjson.loads(response.content)
        return body

    async def list(self, kind: Kind, label_selector: str) -> dict[str, Any]:
        return await self._json(await self.client.get(kind.path(), params={"labelSelector": label_selector}))

    async def watch(self, kind: Kind, label_selector: str, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        params = {
            "watch": "1",
            "labelSelector": label_selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "300",
        }
        async with self.client.stream("GET", kind.path(), params=params) as response:
            if response.status_code >= 400:
                raise ApiError(response.status_code, (await response.aread()).decode()[:500])
            async for line in response.aiter_lines():
                if line:
                    yield orjson.loads(line)

    async def merge_patch(self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        response = await self.client.patch(
            kind.path(namespace, name),
            content=orjson.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        return await self._json(response)

    async def event(self, obj: Mapping[str, Any], kind_name: str, event_type: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": kind_name,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event_type,
            "reason": reason,
            "message": message,
            "source": {"component": "modelpin-reconciler"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._json(
            await self.client.post(
                f"/api/v1/namespaces/{meta['namespace']}/events",
                content=orjson.dumps(body),
                headers={"Content-Type": "application/json"},
            )
        )

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        response = await self.client.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
        if response.status_code == 404:
            return None
        return await self._json(response)

    async def put_lease(self, namespace: str, lease: Mapping[str, Any], create: bool) -> dict[str, Any]:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        body = orjson.dumps(lease)
        headers = {"Content-Type": "application/json"}
        if create:
            return await self._json(await self.client.post(base, content=body, headers=headers))
        name = lease["metadata"]["name"]
        return await self._json(await self.client.put(f"{base}/{name}", content=body, headers=headers))

    async def aclose(self) -> None:
        await self.client.aclose()
