"""What admission decided, before it is written as a response; how values are quoted in messages."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook.templating.causes import Cause


def writers(names: Sequence[str]) -> str:
    """Who may write an annotation only the reconciler writes, as warnings name them."""
    return ", ".join(names) or "no one"


def show(text: str, limit: int = 120) -> str:
    """A value as quoted in messages: repr, cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


@dataclass(slots=True)
class Outcome:
    """What admission decided, before it is written as a response."""

    values: dict[str, str] = field(default_factory=dict)  # pointer -> new field value
    current: dict[str, str] = field(default_factory=dict)  # pointer -> value as admitted
    templates: dict[str, str] = field(default_factory=dict)
    resolved: dict[str, dict[str, str]] = field(default_factory=dict)
    errors: list[tuple[Cause, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # field resolution results (resolved, invalid, paused, policy, recorded) -> fields; the edge counts them
    results: Counter[str] = field(default_factory=Counter)
    # annotations to set besides the records (None: removed)
    annotations: dict[str, str | None] = field(default_factory=dict)
    # a reason to refuse the object as a whole, before any field is resolved
    refusal: tuple[Cause, str] | None = None
    # pointer -> how its resolution came about (history.RESOLVED, PINNED, KEPT)
    how: dict[str, str] = field(default_factory=dict)
    # the whole spec wanted, when a rollout's traffic split is written or removed (else None)
    spec: dict[str, Any] | None = None
