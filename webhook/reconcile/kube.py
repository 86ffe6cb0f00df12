"""The reconciler's apiserver calls, through kubernetes_asyncio.

kubernetes_asyncio is the asyncio port of the official client: the same models,
kubeconfig and in-cluster loading (the in-cluster loader re-reads the rotated
service-account token through ``refresh_api_key_hook``), and a watch helper.
This module adds what the reconciler needs on top: a deadline on every call,
paginated lists, watches that stop when the server ends them (so the caller
owns reconnection, backoff and relisting), and one classification of failures.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio import watch as k8s_watch
from kubernetes_asyncio.client.exceptions import ApiException

from webhook.metrics import APISERVER_ERRORS

# What an apiserver call can fail with: an answer (ApiException, with .status),
# no answer (aiohttp's connection errors, OSError underneath), or no answer in time.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
KUBE_ERRORS: tuple[type[BaseException], ...] = (ApiException, *TRANSPORT_ERRORS)

__all__ = ["KUBE_ERRORS", "TRANSPORT_ERRORS", "ApiException", "Kind", "Kube", "describe", "load_configuration"]


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

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def reason(exc: BaseException) -> str:
    """A bounded label for a failure: the HTTP status, or how the connection failed."""
    if isinstance(exc, ApiException):
        return str(exc.status)
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    return "connection"


def describe(exc: BaseException) -> str:
    """One line, with the cause: ApiException's own str() spans lines and dumps headers."""
    if isinstance(exc, ApiException):
        message = exc.reason or ""
        if exc.body:
            body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body)
            message = f"{message}: {body[:300]}"
        return f"HTTP {exc.status} {message}".strip()
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer within the deadline"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


async def load_configuration(kubeconfig: str | None) -> k8s.Configuration:
    cfg = k8s.Configuration()
    if kubeconfig:
        await k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    else:
        try:
            # try_refresh_token (the default): the kubelet rotates the projected token in place
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            await k8s_config.load_kube_config(client_configuration=cfg)
    return cfg


class Kube:
    """The API objects are made on first use: their aiohttp session belongs to the loop that makes it."""

    def __init__(
        self, configuration: k8s.Configuration, timeout: float, watch_timeout: int = 300, page_size: int = 500
    ) -> None:
        self.configuration = configuration
        self.timeout = timeout
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self._api: k8s.ApiClient | None = None

    @property
    def api(self) -> k8s.ApiClient:
        if self._api is None:
            self._api = k8s.ApiClient(configuration=self.configuration)
        return self._api

    @property
    def custom(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api)

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api)

    @property
    def coordination(self) -> k8s.CoordinationV1Api:
        return k8s.CoordinationV1Api(self.api)

    async def _call(self, operation: str, call: Any, deadline: float | None = None) -> Any:
        # The client's own timeout bounds the HTTP exchange; asyncio's bounds everything around it.
        limit = self.timeout if deadline is None else deadline
        try:
            async with asyncio.timeout(limit):
                return await call(_request_timeout=limit)
        except KUBE_ERRORS as exc:
            APISERVER_ERRORS.labels(operation, reason(exc)).inc()
            raise

    async def list_pages(self, kind: Kind, label_selector: str) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        """Pages of at most ``page_size`` objects, each with the list's resourceVersion.

        A continue token that expires mid-list raises ApiException 410: the caller lists again.
        """
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"label_selector": label_selector, "limit": self.page_size}
            if token:
                kwargs["_continue"] = token

            async def page(_request_timeout: float, kw: dict[str, Any] = kwargs) -> Any:
                return await self.custom.list_cluster_custom_object(
                    kind.group, kind.version, kind.plural, _request_timeout=_request_timeout, **kw
                )

            body: dict[str, Any] = await self._call("list", page)
            meta = body.get("metadata") or {}
            yield body.get("items") or [], str(meta.get("resourceVersion", ""))
            token = meta.get("continue")
            if not token:
                return

    async def watch(self, kind: Kind, label_selector: str, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        """Events after ``resource_version``, bookmarks included, until the server ends the watch.

        An ERROR event (410 Gone when the version is too old) is raised as ApiException.
        A connection that goes silent longer than the server's own timeout plus the call
        deadline raises asyncio.TimeoutError, so a half-open connection cannot hang a watch.
        """
        stream = k8s_watch.Watch()
        read_gap = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout, sock_read=self.watch_timeout + self.timeout
        )
        try:
            events = stream.stream(
                self.custom.list_cluster_custom_object,
                kind.group,
                kind.version,
                kind.plural,
                label_selector=label_selector,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                # with a server-side timeout the helper ends instead of silently reconnecting
                timeout_seconds=self.watch_timeout,
                _request_timeout=read_gap,
            )
            async for event in events:
                yield event
        except KUBE_ERRORS as exc:
            APISERVER_ERRORS.labels("watch", reason(exc)).inc()
            raise
        finally:
            await stream.close()

    async def merge_patch(
        self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any], deadline: float | None = None
    ) -> Any:
        async def call(_request_timeout: float) -> Any:
            return await self.custom.patch_namespaced_custom_object(
                kind.group,
                kind.version,
                namespace,
                kind.plural,
                name,
                dict(patch),
                _content_type="application/merge-patch+json",  # type: ignore[call-arg]
                _request_timeout=_request_timeout,
            )

        return await self._call("patch", call, deadline)

    async def event(
        self,
        involved: Mapping[str, str],
        event_type: str,
        reason_text: str,
        message: str,
    ) -> None:
        """A core/v1 Event (``involved``: apiVersion, kind, namespace, name, uid)."""
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]},
            "involvedObject": dict(involved),
            "type": event_type,
            "reason": reason_text,
            "message": message,
            "source": {"component": "modelpin-reconciler"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

        async def call(_request_timeout: float) -> Any:
            return await self.core.create_namespaced_event(
                involved["namespace"],
                body,  # type: ignore[arg-type]  # the client serialises a dict as it is
                _request_timeout=_request_timeout,
            )

        await self._call("event", call)

    async def get_lease(self, namespace: str, name: str, deadline: float | None = None) -> k8s.V1Lease | None:
        async def call(_request_timeout: float) -> Any:
            return await self.coordination.read_namespaced_lease(name, namespace, _request_timeout=_request_timeout)

        try:
            lease: k8s.V1Lease = await self._call("lease", call, deadline)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return lease

    async def create_lease(self, namespace: str, lease: Mapping[str, Any], deadline: float | None = None) -> None:
        async def call(_request_timeout: float) -> Any:
            return await self.coordination.create_namespaced_lease(
                namespace,
                dict(lease),  # type: ignore[arg-type]
                _request_timeout=_request_timeout,
            )

        await self._call("lease", call, deadline)

    async def replace_lease(self, namespace: str, lease: Mapping[str, Any], deadline: float | None = None) -> None:
        """A compare-and-swap: the body's resourceVersion must still be current, else 409."""
        name = lease["metadata"]["name"]

        async def call(_request_timeout: float) -> Any:
            return await self.coordination.replace_namespaced_lease(
                name,
                namespace,
                dict(lease),  # type: ignore[arg-type]
                _request_timeout=_request_timeout,
            )

        await self._call("lease", call, deadline)

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None
