"""Shared fakes for the unit tests: an in-memory registry, a settable clock, settings."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.support.fakes import (
    Clock,
    FakeRegistry,
    make_settings,
    seed_catalog,
)
from webhook.registry.resolver import Resolver


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MODELPIN_* variable of the developer's shell may leak into settings."""
    for name in list(os.environ):
        if name.startswith("MODELPIN_"):
            monkeypatch.delenv(name)


@pytest.fixture
def registry() -> FakeRegistry:
    reg = FakeRegistry()
    seed_catalog(reg)
    return reg


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def resolver(registry: FakeRegistry, clock: Clock) -> AsyncIterator[Resolver]:
    res = Resolver(make_settings(), {"mlflow": registry}, clock_ms=clock)
    yield res
    if registry.gate is not None:
        registry.gate.set()
    await res.aclose()
