"""What admission says of one resolved field's servability: nothing, a warning, or a refusal.

The namespace's ``servability`` setting decides (its own, else the global one):
``off`` says nothing; ``warn`` turns a flavor mismatch into a warning; ``deny``
into a refusal. A version whose MLmodel could not be read is at most a warning,
whatever the setting: the check is advice about the model, not a gate on the
registry's storage. Judged in memory from what the resolution carries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.config import Settings
from webhook.registry.resolver import Resolution, Resolver
from webhook.registry.servability import Flavors, Mismatch, NoMLmodel, Servable
from webhook.templating.flavors import needed_flavor


@dataclass(frozen=True, slots=True)
class FieldVerdict:
    warning: str | None = None
    refusal: str | None = None


FINE = FieldVerdict()
Check = Callable[[str, Resolution], FieldVerdict]


def mode(settings: Settings, namespace: str | None) -> str:
    """``deny``, ``warn`` or ``off`` for ``namespace``: its policy's setting, else the global one."""
    own = settings.policy(namespace).servability
    return own if own is not None else settings.servability


def checker(resolver: Resolver, mode: str, obj: Mapping[str, Any]) -> Check | None:
    """The check for ``obj``'s fields under ``mode`` (the namespace's), or None when it does not check."""
    if mode == "off":
        return None
    api_version = obj.get("apiVersion")
    group = api_version.rpartition("/")[0] if isinstance(api_version, str) else ""
    kind = obj.get("kind")
    kind = kind if isinstance(kind, str) else ""

    def check(pointer: str, resolution: Resolution) -> FieldVerdict:
        need = needed_flavor(group, kind, obj, pointer)
        if need is None:
            return FINE  # a server modelpin knows no flavor for: nothing to say
        read = resolution.flavors
        if type(read) is Flavors and need.flavor in read.names:
            return FINE  # the common case, answered without building a verdict
        verdict = resolver.servable(resolution, need)
        if isinstance(verdict, Servable):
            return FINE
        label = _label(resolution)
        if isinstance(verdict, Mismatch):
            text = verdict.message(label)
            return FieldVerdict(refusal=text) if mode == "deny" else FieldVerdict(warning=f"{pointer}: {text}")
        if isinstance(verdict, NoMLmodel):
            return FieldVerdict(warning=f"{pointer}: servability not checked: {verdict.message(label)}")
        return FieldVerdict(warning=f"{pointer}: servability of {label} not checked: {verdict.reason}")

    return check


def _label(resolution: Resolution) -> str:
    version = resolution.version
    if version.model_id and version.version == version.model_id:
        return f"logged model {version.model_id}"
    return f"{resolution.model!r} version {version.version}"
