"""Template grammar (DESIGN.md section 1).

Two forms reach the resolver:

    {{ <registry>.<profile>["<reference>"] }}
    models:/<reference>

A string is a *candidate* when its first non-whitespace character begins
``{{`` or ``models:/``; whitespace is any Unicode whitespace (``str.isspace``:
the White_Space property plus the four ASCII separators U+001C..U+001F), the
same set the guard's CEL strips (``WHITESPACE_CLASS``). A candidate that does
not parse is an error and is never passed through: a raw template must not
reach storage.

A bare reference of the form MLflow 3 gives logged models, ``m-`` followed by
32 lowercase hex digits (``m-`` + ``uuid4().hex``: mlflow/store/tracking/
sqlalchemy_store.py and file_store.py), is a logged model by id, as
``mlflow.<flavor>.log_model`` returns it (``models:/m-<id>``): immutable, so a
pin. A registered model whose name has that exact form is reached with a
selector (``m-<id>@alias``, ``m-<id>/7``): a selector always means a registered
model.

Sizes are bounded before any parsing (``MAX_TEMPLATE_BYTES``) and the parse
cache is bounded in bytes as well as entries, so no input grows memory
without bound.
"""

from __future__ import annotations

import re
import sys
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

MODELS_SCHEME = "models:/"
STAGES = {"staging": "Staging", "production": "Production", "archived": "Archived", "none": "None"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# MLflow 3's LoggedModel ids: "m-" + uuid4().hex. Exactly this form, so a registered
# model called e.g. "m-demo" keeps meaning the registered model.
LOGGED_MODEL_ID = re.compile(r"m-[0-9a-f]{32}")

# MLflow's SQL stores hold a registered model name and an alias in String(256)
# columns and a version in an Integer (mlflow/store/model_registry/dbmodels/models.py):
# nothing longer can name a version, so longer references are refused as written.
MAX_NAME_CHARS = 256
MAX_ALIAS_CHARS = 256
MAX_VERSION_DIGITS = 19  # beyond any 64-bit integer; MLflow's versions are 32-bit
# A whole template, in UTF-8 bytes: a 256-character name and a 256-character alias
# of 4-byte characters (2,052 bytes) with room for the registry, profile and spacing.
MAX_TEMPLATE_BYTES = 4096

# Every character ``str.isspace`` accepts: the Unicode White_Space property and U+001C..U+001F.
WHITESPACE = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
# The same set as an RE2 character class for the guard's CEL (``matches``).
WHITESPACE_CLASS = r"[\t-\r\x{1c}-\x{1f}\x{85}\p{Z}]"  # \p{Z}: Zs, Zl and Zp, the rest of the set


class SelectorKind(StrEnum):
    ALIAS = "alias"
    VERSION = "version"
    STAGE = "stage"
    LATEST = "latest"
    DEFAULT = "default"
    LOGGED_MODEL = "logged_model"  # MLflow 3: the reference is a LoggedModel id, not a registered model


@dataclass(frozen=True, slots=True)
class Selector:
    kind: SelectorKind
    value: str = ""

    def __str__(self) -> str:
        if self.kind is SelectorKind.ALIAS:
            return f"@{self.value}"
        if self.kind in (SelectorKind.DEFAULT, SelectorKind.LOGGED_MODEL):
            return ""
        return f"/{self.value}"

    @property
    def pinned(self) -> bool:
        """A fixed version number or a logged model id never moves, so it may be cached long."""
        return self.kind in (SelectorKind.VERSION, SelectorKind.LOGGED_MODEL)


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


# First characters a candidate can start with: checked before anything else so
# most strings of a large spec cost one set lookup.
FIRST_CHARS = frozenset("{m" + WHITESPACE)
_LEADING = re.compile(r"\s*")


def is_candidate(value: str) -> bool:
    if not value or value[0] not in FIRST_CHARS:
        return False  # the common case, decided without copying the string
    # re's \s and str.lstrip() both mean WHITESPACE; matching copies nothing, whatever the length
    start = _LEADING.match(value).end()  # type: ignore[union-attr]  # \s* always matches
    return value.startswith("{{", start) or value.startswith(MODELS_SCHEME, start)


class _ParseCache:
    """LRU of parsed templates, bounded by entries and by the characters of their keys."""

    def __init__(self, max_entries: int, max_chars: int) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.chars = 0
        self._entries: OrderedDict[str, Template] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, text: str) -> Template | None:
        found = self._entries.get(text)
        if found is not None:
            self._entries.move_to_end(text)
        return found

    def put(self, text: str, template: Template) -> None:
        if text in self._entries:
            return
        self._entries[text] = template
        self.chars += len(text)
        while len(self._entries) > self.max_entries or self.chars > self.max_chars:
            old, _ = self._entries.popitem(last=False)
            self.chars -= len(old)

    def clear(self) -> None:
        self._entries.clear()
        self.chars = 0


# A Template holds its text and a reference of at most its length, so about
# three times these characters are held: a few MiB at most.
PARSE_CACHE = _ParseCache(max_entries=4096, max_chars=1 << 20)


def check_size(text: str) -> None:
    """Refuse a candidate longer than ``MAX_TEMPLATE_BYTES`` before any work on it."""
    # a character is at most 4 UTF-8 bytes: only texts near the limit are encoded
    if len(text) * 4 > MAX_TEMPLATE_BYTES and len(text.encode("utf-8", "surrogatepass")) > MAX_TEMPLATE_BYTES:
        raise TemplateError(
            text[:80] + "...",
            1,
            f"template longer than {MAX_TEMPLATE_BYTES} bytes (model names and aliases are at most "
            f"{MAX_NAME_CHARS} characters)",
        )


def parse(text: str) -> Template:
    """Parse a candidate; memoised because the same manifests are admitted again and again."""
    check_size(text)
    found = PARSE_CACHE.get(text)
    if found is None:
        found = _parse(text)
        PARSE_CACHE.put(text, found)
    return found


def _parse(text: str) -> Template:
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
    """Parse ``name``, ``name@alias``, ``name/7``, ``name/Production``, ``name/latest``, ``m-<id>``.

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
            if len(suffix.lstrip("0")) > MAX_VERSION_DIGITS:
                raise TemplateError(text, start + sep + 2, f"version number longer than {MAX_VERSION_DIGITS} digits")
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
        if len(alias) > MAX_ALIAS_CHARS:
            raise TemplateError(text, start + len(name) + 2, f"alias longer than MLflow's {MAX_ALIAS_CHARS} characters")
        return Reference(name, Selector(SelectorKind.ALIAS, alias))
    _check_name(text, start, ref)
    if LOGGED_MODEL_ID.fullmatch(ref):
        return Reference(ref, Selector(SelectorKind.LOGGED_MODEL, ref))
    return Reference(ref, Selector(SelectorKind.DEFAULT))


def _check_name(text: str, start: int, name: str) -> None:
    if not name.strip():
        raise TemplateError(text, start + 1, "empty model name")
    if ":" in name:
        raise TemplateError(text, start + name.index(":") + 1, "model names never hold ':'")
    if name != name.strip():
        raise TemplateError(text, start + 1, "model name has leading or trailing whitespace")
    if len(name) > MAX_NAME_CHARS:
        raise TemplateError(text, start + 1, f"model name longer than MLflow's {MAX_NAME_CHARS} characters")


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


def parse_selector(value: str) -> Selector:
    """A default selector as configured: ``@champion``, ``/Production``, ``/7`` or ``/latest``, and nothing else.

    Raises ValueError (configuration answers it with the key it came from).
    """
    if value.startswith("@"):
        alias = value[1:]
        if not alias:
            raise ValueError(f"invalid default selector {value!r}: expected an alias after '@'")
        if any(c in alias for c in "/@:") or alias != alias.strip():
            raise ValueError(f"invalid default selector {value!r}: an alias holds no '/', '@', ':' or outer spaces")
        return Selector(SelectorKind.ALIAS, alias)
    if not value.startswith("/") or "@" in value:
        raise ValueError(f"invalid default selector {value!r}: expected @alias or /version|stage|latest")
    try:
        return parse_reference(f"x{value}", 0, f"x{value}").selector
    except TemplateError as exc:
        raise ValueError(f"invalid default selector {value!r}: {exc.reason}") from exc
