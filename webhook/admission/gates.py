"""Approval gates: the tags a namespace's policy requires of a version (``require_tags``)."""

from __future__ import annotations

from collections.abc import Mapping


def missing(required: Mapping[str, str] | None, tags: Mapping[str, str]) -> list[tuple[str, str]]:
    """The required ``(tag, value)`` pairs that ``tags`` does not carry, in the policy's order."""
    return [(key, want) for key, want in (required or {}).items() if tags.get(key) != want]


def refusal(
    namespace: str | None, model: str, version: str, tags: Mapping[str, str], lacking: list[tuple[str, str]]
) -> str:
    """Why the version may not run in ``namespace``: each missing tag and what the version has instead."""
    wanted = ", ".join(f"{key}={want}" for key, want in lacking)
    noun = "tag" if len(lacking) == 1 else "tags"
    has = ", ".join(f"{key}={tags[key]!r}" if key in tags else f"{key} unset" for key, _ in lacking)
    return f"namespace {namespace!r} requires {noun} {wanted}; version {version} of {model!r} has {has}"
