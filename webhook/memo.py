"""Admission decisions remembered for objects seen before.

The same object is admitted again and again: GitOps tools re-apply unchanged
manifests on every sync, controllers add finalizers and annotations, the
reconciler touches objects. For such a repeat, walking the spec, planning each
template and building the patch again costs far more than answering.

A decision is a pure function of the object's spec, the few metadata fields
admission reads, the namespace, the kind's flavor, and the resolutions it used.
The memo keys on the first four (serialised, so equality is exact) and
remembers the resolutions by identity: a hit is served only while the resolver
would hand out those very cache entries, so a moved alias, a refresh token or an
expired entry all fall through to a full decision. Only clean answers (allowed,
no warnings) are remembered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from webhook import records
from webhook.profiles import Flavor
from webhook.resolver import Plan, Resolution, Resolver

# Bounds memory: entries x key size stays in the tens of MB at worst.
MAX_KEY_BYTES = 32 * 1024
MAX_ENTRIES = 1024

_ANNOTATIONS = (records.TEMPLATES, records.RESOLVED, records.PAUSED, records.REFRESH)


@dataclass(frozen=True, slots=True)
class Decision:
    """A remembered answer, minus the request's uid."""

    patch: str | None  # base64 JSONPatch, as sent
    uses: tuple[tuple[Plan, Resolution], ...]
    refresh_ms: int
    # fields resolved and kept paused, counted again in the metrics on every hit
    resolved: int
    paused: int
    patched: bool


def key(obj: Mapping[str, Any], namespace: str | None, flavor: Flavor) -> bytes | None:
    """The memo key of an admitted object, or None when it should not be memoised."""
    metadata = obj.get("metadata")
    meta = metadata if isinstance(metadata, Mapping) else {}
    try:
        material = orjson.dumps(
            [
                obj.get("spec"),
                namespace,
                flavor.value,
                "metadata" in obj,
                _fields(meta.get("labels"), (records.MANAGED,)),
                _fields(meta.get("annotations"), _ANNOTATIONS),
            ]
        )
    except (orjson.JSONEncodeError, TypeError):
        return None
    return material if len(material) <= MAX_KEY_BYTES else None


def _fields(value: Any, names: Sequence[str]) -> list[Any] | None:
    # Whether the map exists and whether each key is present both change the patch ops.
    if not isinstance(value, Mapping):
        return None
    return [[name in value, value.get(name)] for name in names]


class DecisionMemo:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: dict[bytes, Decision] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, memo_key: bytes, resolver: Resolver) -> Decision | None:
        decision = self._entries.get(memo_key)
        if decision is None:
            return None
        # ``serves`` also renews entries near the end of their TTL, as a full decision would.
        if not resolver.serves(decision.uses, not_before_ms=decision.refresh_ms):
            del self._entries[memo_key]
            return None
        return decision

    def put(self, memo_key: bytes, decision: Decision) -> None:
        if memo_key not in self._entries and len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[memo_key] = decision
