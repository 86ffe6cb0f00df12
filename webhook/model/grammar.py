"""Template grammar (DESIGN.md section 1).

Two forms reach the resolver:

    {{ <registry>.<profile>["<reference>"] }}
    models:/<reference>

A string is a *candidate* when it starts with ``{{`` or ``models:/`` (after
leading whitespace). A candidate that does not parse is an error and is never
passed through: a raw template must not reach storage.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

MODELS_SCHEME = "models:/"
STAGES = {"staging": "Staging", "production": "Production", "archived": "Archived", "none": "None"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class SelectorKind(StrEnum):
    ALIAS = "alias"
    VERSION = "version"
    STAGE = "stage"
    LATEST = "latest"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Selector:
    kind: SelectorKind
    value: str = ""

    def __str__(self) -> str:
        if self.kind is SelectorKind.ALIAS:
            return f"@{self.value}"
        if self.kind is SelectorKind.DEFAULT:
            return ""
        return f"/{self.value}"

    @property
    def pinned(self) -> bool:
        """A fixed version number never moves, so it may be cached long."""
        return self.kind is SelectorKind.VERSION


@dataclass(frozen=True, slots=True)
class Reference:
    name: str
    selector: Selector

    def __str__(self) -> str:
        return f"{self.name}{self.selector}"


@dataclass(frozen=True, slots=True)
class Template:
    text: str
    registry: str | None  # None: the configured default registry
    profile: str | None  # None: the configured default profile
    reference: Reference


class TemplateError(ValueError):
    """A candidate that does not parse; ``column`` is 1-based into ``text``."""

    def __init__(self, text: str, column: int, reason: str) -> None:
        self.text = text
        self.column = column
        self.reason = reason
        super().__init__(f"{reason} at column {column}")

    def pointer_line(self) -> str:
        """The template with a caret under the offending character."""
        return f"{self.text}\n{' ' * (self.column - 1)}^"


def is_candidate(value: str) -> bool:
    if not value or value[0] not in "{m \t\r\n":
        return False  # the common case, decided without copying the string
    stripped = value.lstrip()
    return stripped.startswith("{{") or stripped.startswith(MODELS_SCHEME)


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> Template:
    """Parse a candidate; memoised because the same manifests are admitted again and again."""
    stripped = text.lstrip()
    offset = len(text) - len(stripped)
    if stripped.startswith(MODELS_SCHEME):
        body = stripped.rstrip()
        ref_start = offset + len(MODELS_SCHEME)
        if len(body) != len(stripped):
            raise TemplateError(text, offset + len(body) + 1, "trailing whitespace after models:/ URI")
        reference = parse_reference(text, ref_start, body[len(MODELS_SCHEME) :])
        return Template(text=text, registry=None, profile=None, reference=reference)
    return _Scanner(text, offset).template()


def parse_reference(text: str, start: int, ref: str) -> Reference:
    """Parse ``name``, ``name@alias``, ``name/7``, ``name/Production``, ``name/latest``.

    ``start`` is the 0-based index of ``ref`` inside ``text`` for error columns.
    """
    if not ref:
        raise TemplateError(text, start + 1, "empty model reference")
    if "/" in ref:
        name, _, suffix = ref.partition("/")
        sep = len(name)
        _check_name(text, start, name)
        if not suffix:
            raise TemplateError(text, start + sep + 2, "expected a version, stage or 'latest' after '/'")
        if "/" in suffix or ":" in suffix or "@" in suffix:
            bad = min(i for i, c in enumerate(suffix) if c in "/:@")
            raise TemplateError(text, start + sep + 2 + bad, f"unexpected {suffix[bad]!r} in selector")
        if suffix.isascii() and suffix.isdigit():
            if int(suffix) < 1:
                raise TemplateError(text, start + sep + 2, "model versions start at 1")
            return Reference(name, Selector(SelectorKind.VERSION, str(int(suffix))))
        if suffix.lower() == "latest":
            return Reference(name, Selector(SelectorKind.LATEST, "latest"))
        stage = STAGES.get(suffix.lower())
        if stage is None:
            raise TemplateError(
                text,
                start + sep + 2,
                f"unknown selector {suffix!r}: expected a version number, 'latest' "
                "or a stage (Staging, Production, Archived, None)",
            )
        return Reference(name, Selector(SelectorKind.STAGE, stage))
    if "@" in ref:
        name, _, alias = ref.rpartition("@")
        _check_name(text, start, name)
        if not alias:
            raise TemplateError(text, start + len(name) + 2, "expected an alias after '@'")
        if ":" in alias:
            raise TemplateError(text, start + len(name) + 2 + alias.index(":"), "unexpected ':' in alias")
        return Reference(name, Selector(SelectorKind.ALIAS, alias))
    _check_name(text, start, ref)
    return Reference(ref, Selector(SelectorKind.DEFAULT))


def _check_name(text: str, start: int, name: str) -> None:
    if not name.strip():
        raise TemplateError(text, start + 1, "empty model name")
    if ":" in name:
        raise TemplateError(text, start + name.index(":") + 1, "model names never hold ':'")
    if name != name.strip():
        raise TemplateError(text, start + 1, "model name has leading or trailing whitespace")


class _Scanner:
    """Hand-written so every error can name the exact offending character."""

    def __init__(self, text: str, pos: int) -> None:
        self.text = text
        self.pos = pos

    def fail(self, reason: str) -> TemplateError:
        found = repr(self.text[self.pos]) if self.pos < len(self.text) else "end of text"
        return TemplateError(self.text, self.pos + 1, f"{reason}, found {found}")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def expect(self, token: str, reason: str) -> None:
        if not self.text.startswith(token, self.pos):
            raise self.fail(reason)
        self.pos += len(token)

    def ident(self, what: str) -> str:
        match = _IDENT.match(self.text, self.pos)
        if match is None:
            raise self.fail(f"expected {what} name")
        self.pos = match.end()
        return match.group()

    def template(self) -> Template:
        self.expect("{{", "expected '{{'")
        self.skip_ws()
        registry = self.ident("registry")
        self.skip_ws()
        self.expect(".", "expected '.' between registry and profile")
        self.skip_ws()
        profile = self.ident("profile")
        self.skip_ws()
        self.expect("[", "expected '[' after profile")
        self.skip_ws()
        if self.pos >= len(self.text) or self.text[self.pos] not in "\"'":
            raise self.fail("expected a quoted model reference")
        quote = self.text[self.pos]
        self.pos += 1
        ref_start = self.pos
        end = self.text.find(quote, ref_start)
        if end < 0:
            raise TemplateError(self.text, len(self.text) + 1, f"unterminated {quote} string")
        reference = parse_reference(self.text, ref_start, self.text[ref_start:end])
        self.pos = end + 1
        self.skip_ws()
        self.expect("]", "expected ']' after the model reference")
        self.skip_ws()
        self.expect("}}", "expected '}}'")
        self.skip_ws()
        if self.pos != len(self.text):
            raise self.fail("unexpected text after '}}'")
        return Template(text=self.text, registry=registry, profile=profile, reference=reference)
