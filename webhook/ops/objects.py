"""Reading and annotating managed objects with the operator's own credentials.

Lists are namespaced when a namespace is given (a user may read one namespace
only) and paginated; a kind whose CRD is not installed lists as empty. A 429
(the apiserver's priority and fairness, or a CRD's storage still starting) is
retried after the Retry-After it names, as kubectl does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from webhook.reconcile.kube import ApiException, Kind, Kube
from webhook.templating.record_annotations import MANAGED

SELECTOR = f"{MANAGED}=true"
# client-go's default for 429 answers
MAX_RETRIES = 10
MAX_RETRY_AFTER_SECONDS = 10.0


def retry_after(exc: ApiException) -> float | None:
    """Seconds to wait before retrying, for a 429; None: do not retry."""
    if exc.status != 429:
        return None
    headers: Mapping[str, str] = exc.headers or {}
    header = headers.get("Retry-After", "1")
    try:
        return min(max(float(header), 0.1), MAX_RETRY_AFTER_SECONDS)
    except ValueError:
        return 1.0


async def _call(kube: Kube, call: Callable[[], Awaitable[Any]]) -> Any:
    for attempt in range(MAX_RETRIES + 1):
        try:
            async with asyncio.timeout(kube.timeout):
                return await call()
        except ApiException as exc:
            wait = retry_after(exc)
            if wait is None or attempt == MAX_RETRIES:
                raise
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises


async def list_managed(kube: Kube, kind: Kind, namespace: str | None) -> AsyncIterator[dict[str, Any]]:
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"label_selector": SELECTOR, "limit": kube.page_size}
        if token:
            kwargs["_continue"] = token

        async def page(kw: dict[str, Any] = kwargs) -> Any:
            if namespace is None:
                return await kube.custom.list_cluster_custom_object(
                    kind.group, kind.version, kind.plural, _request_timeout=kube.timeout, **kw
                )
            return await kube.custom.list_namespaced_custom_object(
                kind.group, kind.version, namespace, kind.plural, _request_timeout=kube.timeout, **kw
            )

        try:
            body = await _call(kube, page)
        except ApiException as exc:
            if exc.status == 404 and token is None:
                return  # the kind is not installed in this cluster
            raise
        for item in body.get("items") or []:
            yield item
        token = (body.get("metadata") or {}).get("continue")
        if not token:
            return


async def get(kube: Kube, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = await _call(
        kube,
        lambda: kube.custom.get_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, name, _request_timeout=kube.timeout
        ),
    )
    return body


async def annotate(kube: Kube, kind: Kind, namespace: str, name: str, changes: Mapping[str, str | None]) -> None:
    """A merge patch of annotations; None removes one."""
    patch = {"metadata": {"annotations": dict(changes)}}
    await _call(kube, lambda: kube.merge_patch(kind, namespace, name, patch))
