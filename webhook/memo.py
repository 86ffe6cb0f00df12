"""Admission decisions remembered for objects seen before.

The same object is admitted again and again: GitOps tools re-apply unchanged
manifests on every sync, controllers add finalizers and annotations, the
reconciler touches objects. For such a repeat, walking the spec, planning each
template and building the patch again costs far more than answering.

A decision is a pure function of the object's spec, the few metadata fields
admission reads, the namespace, the kind's flavor, and the resolutions it used.
The memo keys on the first four (serialised, so equality is exact), twice: by
the whole spec, which answers a repeat before any walk, and by the spec strings
admission acts on, which answers an object changed elsewhere in its spec after
one walk. A third key is the review's own bytes but its uid: the apiserver sends
a repeat (a re-applied manifest, an unchanged sync) as the same bytes with a new
uid, and that is answered before the review is even parsed. It is remembered
with full decisions and with repeats of a whole spec, not for specs answered by
their fields: those were just edited, and their bodies would crowd the memo.

It remembers the resolutions by identity: a hit is served only while the
resolver would hand out those very cache entries, so a moved alias, a refresh
token or an expired entry all fall through to a full decision. Only clean
answers (allowed, no warnings) are remembered.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson

from webhook import records
from webhook.profiles import Flavor
from webhook.resolver import Plan, Resolution, Resolver
from webhook.reviews import BadRequest, parse_review

# Bounds memory: entries x key size stays in the tens of MB at worst.
MAX_KEY_BYTES = 32 * 1024
MAX_ENTRIES = 1024

MANAGED = records.MANAGED
_ANNOTATIONS = (records.TEMPLATES, records.RESOLVED, records.PAUSED, records.REFRESH)


@dataclass(frozen=True, slots=True)
class Decision:
    """A remembered answer, minus the request's uid."""

    patch: str | None  # base64 JSONPatch, as sent
    uses: tuple[tuple[Plan, Resolution], ...]
    refresh_ms: int
    # until then none of ``uses`` is due for renewal (``Resolver.renew_at_ms``)
    renew_at_ms: float
    # fields resolved and kept paused, counted again in the metrics on every hit
    resolved: int
    paused: int
    patched: bool
    # the whole answer but its uid (``reviews.allowed_around_uid``), for reviews matched by ``review_key``
    answer: tuple[bytes, bytes]


Key = bytes

_UID = b'"uid":"'
# Only a uid that needs no JSON escaping can be cut out of a review and put into an answer
# as raw bytes. The apiserver's uids are UUIDs.
_PLAIN_UID = re.compile(rb"[0-9A-Za-z-]{1,128}")
_PROBE = b"modelpin-probe"


@dataclass(frozen=True, slots=True)
class ReviewKey:
    key: Key
    at: int  # where the token was cut out of the body
    uid: str  # the token cut out: the request's uid only if ``cuts_request_uid``

    def cuts_request_uid(self, request_uid: str) -> bool:
        """Whether the token cut out is the request's uid, not some other ``uid`` field of the review.

        Checked by parsing the key with another token in the cut: only if
        that token becomes the request's uid does every body with this key
        carry its request uid there. Called before the key is remembered,
        never on the path that answers by it.
        """
        if request_uid != self.uid:
            return False
        try:
            probe = parse_review(self.key[: self.at] + _PROBE + self.key[self.at :])
        except BadRequest:
            return False
        return bool(probe["uid"] == _PROBE.decode())


def review_key(body: bytes) -> ReviewKey | None:
    """The key of a review by its bytes with the first ``"uid":"…"`` value cut out, before parsing.

    Two bodies with the same key are the same bytes but for that one plain
    token, so they parse alike but for it. Such a key is only put in the memo
    once the token is shown to be the request's uid (``cuts_request_uid``), so
    a later body with that key is a valid review with the same decision.
    The key starts with ``{``; the other keys are JSON arrays and start with ``[``.
    """
    if len(body) > MAX_KEY_BYTES:
        return None
    start = body.find(_UID)
    if start < 0:
        return None
    start += len(_UID)
    end = body.find(b'"', start)
    if end < 0 or not _PLAIN_UID.fullmatch(body, start, end):
        return None
    return ReviewKey(body[:start] + body[end:], start, body[start:end].decode("ascii"))


def answer(decision: Decision, uid: str) -> bytes:
    """The rendered AdmissionReview for ``decision``; ``uid`` must be plain (``review_key``'s)."""
    head, tail = decision.answer
    return head + uid.encode("ascii") + tail


def key(obj: Mapping[str, Any], namespace: str | None, flavor: Flavor) -> Key | None:
    """The key of an object by its whole spec, or None when it should not be memoised."""
    return _key("spec", obj.get("spec"), obj, namespace, flavor)


def fields_key(
    found: Sequence[tuple[str, str]], obj: Mapping[str, Any], namespace: str | None, flavor: Flavor
) -> Key | None:
    """The key of an object by the spec strings admission acts on (``decide``'s survey).

    Admission reads nothing else of the spec, so objects that differ only
    elsewhere (replicas, resources, images) share a decision.
    """
    return _key("fields", found, obj, namespace, flavor)


def _key(tag: str, material: object, obj: Mapping[str, Any], namespace: str | None, flavor: Flavor) -> Key | None:
    metadata = obj.get("metadata")
    meta = metadata if _is_map(metadata) else {}
    labels, annotations = meta.get("labels"), meta.get("annotations")
    try:
        serialised = orjson.dumps(
            (
                tag,  # spec and fields keys share one memo and never collide (review keys start with "{")
                material,
                namespace,
                flavor,
                "metadata" in obj,
                # Whether each map exists and whether each key is present both change the patch ops.
                (MANAGED in labels, labels.get(MANAGED)) if _is_map(labels) else None,
                [(name in annotations, annotations.get(name)) for name in _ANNOTATIONS]
                if _is_map(annotations)
                else None,
            )
        )
    except (orjson.JSONEncodeError, TypeError):
        return None
    return serialised if len(serialised) <= MAX_KEY_BYTES else None


def _is_map(value: object) -> TypeGuard[Mapping[str, Any]]:
    # the exact type first: an ABC isinstance check is slow next to the rest of a key
    return type(value) is dict or isinstance(value, Mapping)


class DecisionMemo:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        # Oldest first. A plain dict evicting ``next(iter(...))`` scans the slots its earlier
        # evictions left empty, microseconds per put once full; ``popitem(last=False)`` does not.
        self._entries: OrderedDict[Key, Decision] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, memo_key: Key, resolver: Resolver) -> Decision | None:
        decision = self._entries.get(memo_key)
        if decision is None:
            return None
        # ``serves`` also renews entries near the end of their TTL, as a full decision would.
        if resolver.serves(decision.uses, not_before_ms=decision.refresh_ms, renew_at_ms=decision.renew_at_ms):
            return decision
        del self._entries[memo_key]
        return None

    def put(self, memo_key: Key, decision: Decision) -> None:
        if memo_key not in self._entries and len(self._entries) >= self.max_entries:
            self._entries.popitem(last=False)
        self._entries[memo_key] = decision
