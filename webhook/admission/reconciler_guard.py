"""What the reconciler may change: the declared template fields, nothing else of ``spec``.

The reconciler only writes a refresh token; the webhook then rewrites the resolved fields in
that same request. So for a request made by the reconciler's identity, the spec as admitted
must equal the old object's spec everywhere but on the template-bearing fields. A leaked
reconciler token could otherwise send an image change together with a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.templating.spec_fields import escape
from webhook.templating.template_paths import ITEM, LEAF, KindPaths

# Pointers named in a denial; the rest are counted.
MAX_SHOWN = 10


def changes_outside_templates(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], paths: KindPaths | None
) -> list[str]:
    """RFC 6901 pointers under ``/spec`` where ``new`` differs from ``old`` off the template fields.

    Without ``paths`` (a kind added by rule, templates anywhere under ``spec``), any string
    may change but nothing else: not a number, a key, a list's length or a value's type.
    """
    out: list[str] = []
    old_spec = old.get("spec") if old is not None else None
    _diff(old_spec, new.get("spec"), None if paths is None else paths.trie, "/spec", out)
    return out


def _diff(old: Any, new: Any, trie: Mapping[str, object] | None, pointer: str, out: list[str]) -> None:
    if trie is None:
        if isinstance(old, str) and isinstance(new, str):
            return
    elif LEAF in trie:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old.keys() | new.keys():
            if key not in old or key not in new:
                out.append(f"{pointer}/{escape(str(key))}")
                continue
            _diff(old[key], new[key], _child(trie, str(key)), f"{pointer}/{escape(str(key))}", out)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            out.append(pointer)
            return
        child = _child(trie, ITEM)
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            _diff(a, b, child, f"{pointer}/{index}", out)
    elif type(old) is not type(new) or old != new:
        out.append(pointer)


def _child(trie: Mapping[str, object] | None, token: str) -> Mapping[str, object] | None:
    if trie is None:
        return None
    found = trie.get(token)
    # off the declared paths: nothing below may change, even a string
    return found if isinstance(found, dict) else _NOTHING


_NOTHING: Mapping[str, object] = {}
