"""The docs keep up with the code: every settings key documented, every relative link resolving."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import pydantic.dataclasses
import pytest
from prometheus_client.metrics import MetricWrapperBase
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from webhook import metrics
from webhook.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION = ROOT / "docs" / "configuration.md"
OPERATIONS = ROOT / "docs" / "operations.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _models_in(annotation: object) -> Iterator[type]:
    """The pydantic models and dataclasses an annotation holds: itself, in a union, or as a list item or dict value."""
    if isinstance(annotation, type) and (
        issubclass(annotation, BaseModel) or pydantic.dataclasses.is_pydantic_dataclass(annotation)
    ):
        yield annotation
        return
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, dict, typing.Annotated):
        for arg in typing.get_args(annotation):
            yield from _models_in(arg)


def _fields(model: type) -> dict[str, FieldInfo]:
    if issubclass(model, BaseModel):
        return model.model_fields
    found: dict[str, FieldInfo] = model.__pydantic_fields__  # type: ignore[attr-defined]
    return found


def settings_keys(model: type = Settings, prefix: str = "") -> list[str]:
    """Every key of the settings model and the models nested in it, as dotted paths."""
    keys = []
    for name, field in _fields(model).items():
        keys.append(f"{prefix}{name}")
        for nested in _models_in(field.annotation):
            keys += settings_keys(nested, f"{prefix}{name}.")
    return keys


def _sections(text: str) -> dict[str, str]:
    """configuration.md's "### " sections by heading: "Top level", "`registries.<name>`", "`cache`", ..."""
    parts = re.split(r"^### (.+)$", text, flags=re.MULTILINE)
    return {heading.strip(): body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


def documented(key: str, text: str) -> bool:
    """A key is a table row of its own (| `key` | default | meaning |) in its section."""
    section, _, leaf = key.rpartition(".")
    sections = _sections(text)
    if section:
        bodies = [body for heading, body in sections.items() if heading.startswith(f"`{section}")]
    else:
        bodies = [sections.get("Top level", "")]
    return any(f"| `{leaf}` |" in body for body in bodies)


def test_the_walk_reaches_nested_and_dict_valued_models() -> None:
    keys = settings_keys()
    assert "cache.not_found_ttl_seconds" in keys
    assert "registries.max_concurrent_lookups" in keys  # dict[str, RegistryConfig]
    assert "namespaces.models" in keys  # dict[str, NamespacePolicy]
    assert "reconciler.touch_burst" in keys
    assert "rclone.s3_buckets" in keys  # a pydantic dataclass
    assert "namespaces.rollout.analysis.queries.max" in keys  # a model in a list, in a model, in a dict's model


@pytest.mark.parametrize("key", settings_keys())
def test_every_settings_key_is_documented(key: str) -> None:
    assert documented(key, CONFIGURATION.read_text()), f"{key} is not a row in {CONFIGURATION.relative_to(ROOT)}"


def test_an_undocumented_key_is_caught() -> None:
    class Extended(Settings):
        a_key_nobody_wrote_down: int = 0

    text = CONFIGURATION.read_text()
    missing = [k for k in settings_keys(Extended) if not documented(k, text)]
    assert missing == ["a_key_nobody_wrote_down"]
    # a row in the wrong section does not count: `enabled` is documented under `registry_health` only
    assert not documented("cache.enabled", text)


def metric_names() -> list[str]:
    """Every metric modelpin exports, as scraped (counters with ``_total``)."""
    found = [v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)]
    return sorted(f"{m._name}_total" if m._type == "counter" else m._name for m in found)


@pytest.mark.parametrize("name", metric_names())
def test_every_metric_is_documented(name: str) -> None:
    assert f"| `{name}" in OPERATIONS.read_text(), f"{name} is not a row in docs/operations.md"


def _anchors(page: Path) -> set[str]:
    """GitHub's heading slugs: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    slugs = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slugs.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return slugs


def _links() -> list[tuple[Path, str]]:
    return [
        (page, target)
        for page in PAGES
        for target in LINK.findall(page.read_text())
        if not re.match(r"[a-z]+:", target)
    ]


@pytest.mark.parametrize(("page", "target"), _links(), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_every_relative_link_resolves(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
    if anchor and dest.suffix == ".md":
        assert anchor in _anchors(dest), f"{page.relative_to(ROOT)} links to {target}: no such heading"
