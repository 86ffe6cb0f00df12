"""The kinds operators name on the command line, as kubectl names them (from the kind catalogue)."""

from __future__ import annotations

from dataclasses import dataclass

from webhook.reconcile.kube import Kind
from webhook.templating.template_paths import KINDS


@dataclass(frozen=True, slots=True)
class Named:
    kind: Kind
    singular: str  # what is printed: ``inferenceservice/iris``


# singular -> the kind at the version the CLI reads, and kubectl's short names
_KINDS = {k.singular: (Kind(k.group, k.versions[0], k.plural), k.short_names) for k in KINDS}

NAMES: dict[str, Named] = {}
for _singular, (_kind, _short) in _KINDS.items():
    for _name in (_singular, _kind.plural, *_short):
        NAMES[_name] = Named(_kind, _singular)
        # kubectl also takes plural.group and singular.group
        NAMES[f"{_name}.{_kind.group}"] = Named(_kind, _singular)

BY_PLURAL = {(named.kind.group, named.kind.plural): named for named in NAMES.values()}


class KindError(ValueError):
    pass


def singular(kind: Kind) -> str:
    """The printed name of a kind: the singular for the built-in ones, else the plural."""
    named = BY_PLURAL.get((kind.group, kind.plural))
    return named.singular if named else kind.plural


def parse_target(text: str) -> tuple[Named, str]:
    """``KIND/NAME`` as kubectl takes it, e.g. ``isvc/iris`` or ``seldondeployment/fraud``."""
    kind_text, sep, name = text.partition("/")
    if not sep or not kind_text or not name or "/" in name:
        raise KindError(f"expected KIND/NAME (e.g. inferenceservice/iris), got {text!r}")
    named = NAMES.get(kind_text.lower())
    if named is None:
        known = ", ".join(f"{s} ({', '.join((k.plural, *short))})" for s, (k, short) in _KINDS.items())
        raise KindError(f"unknown kind {kind_text!r}; known: {known}")
    return named, name
