"""``modelpin render``: the admission core applied to YAML files, for CI previews."""

from __future__ import annotations

import base64
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import yaml

from webhook.admission.decision import admit
from webhook.admission.review import AdmissionRequest
from webhook.config import Settings
from webhook.registry.resolver import Resolver
from webhook.templating.grammar import MODELS_SCHEME, SelectorKind, Template, TemplateError, is_candidate, parse


class RenderError(Exception):
    pass


# render checks servability unless told otherwise: CI is where a mismatch is cheapest to catch
DEFAULT_SERVABILITY = "deny"
SERVABILITY_CHOICES = ("deny", "warn", "off")


def with_servability(settings: Settings, choice: str | None) -> Settings:
    """``settings`` as render applies them: the check on (``deny``) by default.

    ``choice`` (``--servability``) applies to every namespace; without it, the global
    setting becomes ``deny`` and a namespace's own setting still wins for that namespace.
    """
    if choice is None:
        return settings.model_copy(update={"servability": DEFAULT_SERVABILITY})
    namespaces = {name: policy.model_copy(update={"servability": None}) for name, policy in settings.namespaces.items()}
    return settings.model_copy(update={"servability": choice, "namespaces": namespaces})


def review_request(obj: dict[str, Any], namespace: str | None) -> AdmissionRequest:
    """The request the apiserver would send for a dry-run create of ``obj``."""
    api_version = str(obj.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    metadata = obj.get("metadata")
    found = metadata.get("namespace") if isinstance(metadata, dict) else None
    ns = namespace or (found if isinstance(found, str) else None) or "default"
    return {
        "uid": str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": str(obj.get("kind", ""))},
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
        request = review_request(doc, namespace)
        response = (await admit(request, resolver=resolver, settings=resolver.settings)).response
        warnings += [f"document {index + 1} ({name}): {w}" for w in response.get("warnings", [])]
        if not response["allowed"]:
            errors.append(f"document {index + 1} ({name}): {response['status']['message']}")
            out.append(doc)
            continue
        patch = response.get("patch")
        ops = orjson.loads(base64.b64decode(patch)) if patch else []
        out.append(jsonpatch.apply_patch(doc, ops) if ops else doc)
    return out, errors, warnings + stage_hints(docs)


def stage_hints(docs: Iterable[Any]) -> list[str]:
    """One hint per distinct template that selects by stage: MLflow deprecated stages in favour of aliases."""
    seen: dict[str, str] = {}
    for doc in docs:
        if isinstance(doc, dict):
            for text in _candidates(doc.get("spec")):
                if text in seen:
                    continue
                try:
                    template = parse(text)
                except TemplateError:
                    continue  # the admission answer names it
                if template.reference.selector.kind is SelectorKind.STAGE:
                    alias = _as_alias(template)
                    seen[text] = f"{text.strip()} uses a stage; MLflow deprecated stages: prefer an alias ({alias})"
    return list(seen.values())


def _as_alias(template: Template) -> str:
    ref = f"{template.reference.name}@{template.reference.selector.value.lower()}"
    if template.registry is None:
        return MODELS_SCHEME + ref
    return f'{{{{ {template.registry}.{template.profile}["{ref}"] }}}}'


def _candidates(node: Any) -> Iterable[str]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if is_candidate(item):
                yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def read_source(source: str | None) -> str:
    """The YAML text of a file, of a directory's manifests (as ``kubectl apply -f DIR``), or of stdin."""
    if source in (None, "-"):
        return sys.stdin.read()
    path = Path(source)
    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
            if not files:
                raise RenderError(f"{path} holds no {', '.join(MANIFEST_SUFFIXES)} files")
            return "\n---\n".join(p.read_text() for p in files)
        return path.read_text()
    except OSError as exc:
        raise RenderError(f"cannot read {source}: {exc.strerror or exc}") from exc


def load_documents(text: str) -> list[Any]:
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise RenderError(f"not valid YAML: {exc}") from exc


def dump_documents(docs: list[Any]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)
