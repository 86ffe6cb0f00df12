"""``modelpin render``: the admission core applied to YAML files, for CI previews."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable
from typing import Any

import jsonpatch
import orjson
import yaml

from webhook.admission import admit
from webhook.resolver import Resolver


class RenderError(Exception):
    pass


def review_request(obj: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    api_version = str(obj.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    ns = namespace or (obj.get("metadata") or {}).get("namespace") or "default"
    return {
        "uid": str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": obj.get("kind", "")},
        "namespace": ns,
        "operation": "CREATE",
        "object": obj,
        "dryRun": True,
    }


async def render_documents(
    docs: Iterable[Any], *, namespace: str | None, resolver: Resolver
) -> tuple[list[Any], list[str], list[str]]:
    """Resolved documents, error messages and warnings, in document order."""
    out: list[Any] = []
    errors: list[str] = []
    warnings: list[str] = []
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            out.append(doc)
            continue
        name = f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"
        response = await admit(review_request(doc, namespace), resolver=resolver)
        warnings += [f"document {index + 1} ({name}): {w}" for w in response.get("warnings", [])]
        if not response["allowed"]:
            errors.append(f"document {index + 1} ({name}): {response['status']['message']}")
            out.append(doc)
            continue
        patch = response.get("patch")
        ops = orjson.loads(base64.b64decode(patch)) if patch else []
        out.append(jsonpatch.apply_patch(doc, ops) if ops else doc)
    return out, errors, warnings


def load_documents(text: str) -> list[Any]:
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise RenderError(f"not valid YAML: {exc}") from exc


def dump_documents(docs: list[Any]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)
