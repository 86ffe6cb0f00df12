"""Where templates are found (DESIGN.md section 2): every candidate string under ``spec``.

Discovery walks the whole spec, whatever the kind, so a template written where
the guard cannot protect it is found too; each one found says whether its field
is one of the kind's declared template-bearing paths (``template_paths``), which
admission resolves, or not, which admission refuses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from webhook.templating.grammar import FIRST_CHARS, is_candidate
from webhook.templating.template_paths import ITEM, LEAF


def escape(token: str) -> str:
    """RFC 6901 escaping of one pointer token."""
    return token.replace("~", "~0").replace("/", "~1")


_FIRST = FIRST_CHARS
_ANYWHERE: dict[str, object] = {}  # a trie position meaning "no declared paths: every field bears templates"


def interesting_strings(
    obj: Mapping[str, Any],
    also: frozenset[str] | set[str],
    paths: dict[str, object] | None = None,
) -> list[tuple[str, str, bool]]:
    """(pointer, value, declared) for candidates and for values in ``also``, in document order.

    ``paths`` is a kind's trie of template-bearing paths (``template_paths``);
    ``declared`` says whether the pointer is one of them (always, without ``paths``).
    The hot path of admission: pointers are built only for the few strings
    that matter, not for every string of a large object. The walk is iterative:
    a spec nested thousands of levels deep costs memory, not the interpreter's stack.
    """
    found: list[tuple[str, str, bool]] = []
    spec = obj.get("spec")
    if isinstance(spec, dict | list) and spec:
        _visit(spec, ["spec"], also, found, _ANYWHERE if paths is None else paths)
    return found


def _visit(
    root: Any,
    path: list[str],
    also: frozenset[str] | set[str],
    found: list[tuple[str, str, bool]],
    trie: dict[str, object] | None,
) -> None:
    # ``path`` holds escaped tokens, one per open container, joined per found string.
    # ``trie`` is the declared-path position of the container (None: off every path).
    # Exact type checks first: parsed JSON holds nothing else, and they cost a
    # fraction of ``isinstance``; subclasses (from other loaders) take the slow branch.
    stack: list[tuple[Iterator[tuple[Any, Any]], dict[str, object] | None, bool]] = [
        (_items(root), trie, isinstance(root, list))
    ]
    while stack:
        items, node, is_list = stack[-1]
        for key, child in items:
            kind = type(child)
            if kind is str or (kind is not dict and kind is not list and isinstance(child, str)):
                if (child and child[0] in _FIRST and is_candidate(child)) or (also and child in also):
                    leaf = _step(node, key, is_list)
                    declared = leaf is _ANYWHERE or (leaf is not None and LEAF in leaf)
                    found.append(("/" + "/".join(path) + "/" + _token(key), child, declared))
            elif child and (kind is dict or kind is list or isinstance(child, dict | list)):
                # inline for the common case (a plain key; off every declared path or anywhere): 2 % of a decision
                plain = type(key) is str and "~" not in key and "/" not in key
                path.append(key if plain else _token(key))
                below = node if node is None or node is _ANYWHERE else _step(node, key, is_list)
                if kind is dict:
                    stack.append((iter(child.items()), below, False))
                elif kind is list:
                    stack.append((enumerate(child), below, True))
                else:
                    stack.append((_items(child), below, isinstance(child, list)))
                break
        else:
            stack.pop()
            if len(path) > 1:
                path.pop()


def _items(node: Any) -> Iterator[tuple[Any, Any]]:
    return iter(node.items()) if isinstance(node, dict) else enumerate(node)


def _step(node: dict[str, object] | None, key: object, is_list: bool) -> dict[str, object] | None:
    """The trie position below ``node`` for ``key`` (list items match ITEM only)."""
    if node is None or node is _ANYWHERE:
        return node
    child = node.get(ITEM) if is_list else (node.get(key) if isinstance(key, str) and key != LEAF else None)
    return child if isinstance(child, dict) else None


def _token(key: object) -> str:
    if isinstance(key, str):
        return escape(key) if "~" in key or "/" in key else key
    return str(key)
