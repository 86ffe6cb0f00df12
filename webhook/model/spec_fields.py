"""Where templates are found (DESIGN.md section 2): every string under ``spec``.

Discovery is deliberately kind-agnostic: Seldon graphs nest ``children`` to any
depth, KServe has a field per framework, and users add kinds by rule, so a
fixed list of paths would always be missing one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from webhook.model.grammar import is_candidate


def escape(token: str) -> str:
    """RFC 6901 escaping of one pointer token."""
    return token.replace("~", "~0").replace("/", "~1")


def walk_strings(node: Any, pointer: str) -> Iterator[tuple[str, str]]:
    """Yield (pointer, value) for every string at or below ``node``."""
    if isinstance(node, str):
        yield pointer, node
    elif isinstance(node, dict):
        for key, child in node.items():
            yield from walk_strings(child, f"{pointer}/{escape(str(key))}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from walk_strings(child, f"{pointer}/{index}")


def spec_strings(obj: dict[str, Any]) -> Iterator[tuple[str, str]]:
    spec = obj.get("spec")
    if spec is None:
        return iter(())
    return walk_strings(spec, "/spec")


# First characters a candidate can start with (see ``is_candidate``): checked
# inline so most strings of a large spec cost no function call.
_FIRST = frozenset("{m \t\r\n")


def interesting_strings(obj: dict[str, Any], also: frozenset[str] | set[str]) -> list[tuple[str, str]]:
    """(pointer, value) for candidates and for values in ``also``, in document order.

    The hot path of admission: pointers are built only for the few strings
    that matter, not for every string of a large object.
    """
    found: list[tuple[str, str]] = []
    spec = obj.get("spec")
    if isinstance(spec, dict | list):
        _visit(spec, ["spec"], also, found)
    return found


def _visit(node: Any, path: list[str], also: frozenset[str] | set[str], found: list[tuple[str, str]]) -> None:
    # A module-level function, not a closure: a recursive closure is a reference
    # cycle, and one per review keeps the garbage collector busy on the hot path.
    # ``path`` holds escaped tokens, pushed per container, joined per found string.
    # Exact type checks first: parsed JSON holds nothing else, and they cost a
    # fraction of ``isinstance``; subclasses (from other loaders) take the slow branch.
    for key, child in node.items() if type(node) is dict or isinstance(node, dict) else enumerate(node):
        kind = type(child)
        if kind is str or (kind is not dict and kind is not list and isinstance(child, str)):
            if (child and child[0] in _FIRST and is_candidate(child)) or (also and child in also):
                found.append(("/" + "/".join(path) + "/" + _token(key), child))
        elif child and (kind is dict or kind is list or isinstance(child, dict | list)):
            path.append(_token(key))
            _visit(child, path, also, found)
            path.pop()


def _token(key: object) -> str:
    if isinstance(key, str):
        return escape(key) if "~" in key or "/" in key else key
    return str(key)


def find_candidates(obj: dict[str, Any]) -> dict[str, str]:
    """Pointer to template text for every template candidate under ``spec``."""
    return {ptr: value for ptr, value in spec_strings(obj) if is_candidate(value)}
