"""Reading and annotating managed objects with the operator's own credentials.

Lists are namespaced when a namespace is given (a user may read one namespace
only) and paginated; a kind whose CRD is not installed lists as empty.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from webhook.reconcile.kube import ApiException, Kind, Kube
from webhook.templating.record_annotations import MANAGED

SELECTOR = f"{MANAGED}=true"


async def list_managed(kube: Kube, kind: Kind, namespace: str | None) -> AsyncIterator[dict[str, Any]]:
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"label_selector": SELECTOR, "limit": kube.page_size}
        if token:
            kwargs["_continue"] = token
        try:
            async with asyncio.timeout(kube.timeout):
                if namespace is None:
                    body = await kube.custom.list_cluster_custom_object(
                        kind.group, kind.version, kind.plural, _request_timeout=kube.timeout, **kwargs
                    )
                else:
                    body = await kube.custom.list_namespaced_custom_object(
                        kind.group, kind.version, namespace, kind.plural, _request_timeout=kube.timeout, **kwargs
                    )
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
    async with asyncio.timeout(kube.timeout):
        body: dict[str, Any] = await kube.custom.get_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, name, _request_timeout=kube.timeout
        )
    return body


async def annotate(kube: Kube, kind: Kind, namespace: str, name: str, changes: Mapping[str, str | None]) -> None:
    """A merge patch of annotations; None removes one."""
    await kube.merge_patch(kind, namespace, name, {"metadata": {"annotations": dict(changes)}})
