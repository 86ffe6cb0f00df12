"""Fakes and helpers for unit tests of pure logic: a registry, a clock, settings, patch decoding."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import os
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import orjson
from prometheus_client import REGISTRY as PROMETHEUS

from webhook.config import Settings
from webhook.edge.webhook_app import ServerState, create_app
from webhook.registry.clients import ModelVersion, NotFound
from webhook.registry.resolver import Resolver

AZURE_ROOT = "wasbs://artifacts@modelpinci.blob.core.windows.net/mlflow/10"
SEED_MODELS = ("iris demo1", "iris demo2", "iris demo3", "iris demo4")


class FakeRegistry:
    """The ``Registry`` protocol over dicts; counts calls, can fail or hang."""

    def __init__(self, name: str = "mlflow") -> None:
        self.name = name
        self.versions: dict[str, dict[str, ModelVersion]] = {}
        self.aliases: dict[tuple[str, str], str] = {}
        self.runs: dict[str, str] = {}
        self.logged_models: dict[str, str] = {}
        self.downloads: dict[tuple[str, str], str] = {}
        self.calls: Counter[str] = Counter()
        self.failure: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.closed = False

    # --- catalogue -----------------------------------------------------------

    def add(
        self,
        name: str,
        version: int | str,
        source: str,
        *,
        stage: str = "None",
        status: str = "READY",
        run_id: str = "",
        model_id: str = "",
        tags: dict[str, str] | None = None,
    ) -> ModelVersion:
        mv = ModelVersion(
            name=name,
            version=str(version),
            status=status,
            stage=stage,
            source=source,
            run_id=run_id,
            model_id=model_id,
            tags=dict(tags or {}),
        )
        self.versions.setdefault(name, {})[str(version)] = mv
        return mv

    def set_alias(self, name: str, alias: str, version: int | str) -> None:
        self.aliases[(name, alias)] = str(version)

    def fail_with(self, exc: Exception | None) -> None:
        self.failure = exc

    def hang(self) -> asyncio.Event:
        self.gate = asyncio.Event()
        return self.gate

    @property
    def lookups(self) -> int:
        """Version selections: one per resolution that reached the registry."""
        return self.calls["get_version"] + self.calls["get_alias"] + self.calls["search_versions"]

    # --- protocol ------------------------------------------------------------

    async def _enter(self, op: str) -> None:
        self.calls[op] += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure

    async def get_version(self, model: str, version: str) -> ModelVersion:
        await self._enter("get_version")
        try:
            return self.versions[model][version]
        except KeyError:
            raise NotFound(f"RESOURCE_DOES_NOT_EXIST: {model} v{version}") from None

    async def get_alias(self, model: str, alias: str) -> ModelVersion:
        await self._enter("get_alias")
        try:
            return self.versions[model][self.aliases[(model, alias)]]
        except KeyError:
            raise NotFound(f"INVALID_PARAMETER_VALUE: alias {alias} not found") from None

    async def search_versions(self, model: str) -> list[ModelVersion]:
        await self._enter("search_versions")
        return list(self.versions.get(model, {}).values())

    async def download_uri(self, model: str, version: str) -> str:
        await self._enter("download_uri")
        key = (model, version)
        if key in self.downloads:
            return self.downloads[key]
        return self.versions[model][version].source

    async def run_artifact_uri(self, run_id: str) -> str:
        await self._enter("run_artifact_uri")
        try:
            return self.runs[run_id]
        except KeyError:
            raise NotFound(f"RESOURCE_DOES_NOT_EXIST: run {run_id}") from None

    async def logged_model_artifact_uri(self, model_id: str) -> str:
        await self._enter("logged_model_artifact_uri")
        try:
            return self.logged_models[model_id]
        except KeyError:
            raise NotFound(f"RESOURCE_DOES_NOT_EXIST: logged model {model_id}") from None

    async def aclose(self) -> None:
        self.closed = True


class Clock:
    """Milliseconds since the epoch, moved by hand."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "default_selector": "@champion",
        "registries": {
            "mlflow": {
                "tracking_uri": "http://mlflow.invalid",
                "artifact_roots": {"mlflow-artifacts:/": "s3://mlflow-proxied/"},
            },
        },
        "profiles": {"modelcar": "oci://quay.io/rhoai/{name}:{tags[git_commit]}"},
        "namespaces": {
            "restricted": {"models": ["fraud*"], "registries": ["mlflow"]},
            "staging": {"default_selector": "/Staging"},
        },
        "cache": {"pinned_ttl_seconds": 3600, "floating_ttl_seconds": 30, "max_stale_seconds": 600},
        "lookup_deadline_seconds": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


def seed_catalog(reg: FakeRegistry) -> None:
    """The four seed models on Azure, each with a champion alias, plus a few others."""
    for index, name in enumerate(SEED_MODELS, start=1):
        for version in (1, 2):
            run = f"run-{index}-{version}"
            reg.runs[run] = f"{AZURE_ROOT}/{run}/artifacts"
            reg.add(name, version, f"runs:/{run}/model", run_id=run)
        reg.set_alias(name, "champion", 1)
    reg.add("fraud", 1, "s3://mlflow/7/r1/artifacts/model", run_id="r1", stage="Archived")
    reg.add("fraud", 2, "s3://mlflow/7/r2/artifacts/model", run_id="r2", stage="Production")
    reg.add("fraud", 3, "s3://mlflow/7/r3/artifacts/model", run_id="r3", stage="Staging")
    reg.add("fraud", 4, "s3://mlflow/7/r4/artifacts/model", run_id="r4", status="PENDING_REGISTRATION")
    reg.set_alias("fraud", "champion", 2)


def seed_uri(name: str, version: int, flavor: str = "seldon") -> str:
    index = SEED_MODELS.index(name) + 1
    path = f"mlflow/10/run-{index}-{version}/artifacts/model"
    if flavor == "seldon":
        return f"wasbs://artifacts/{path}"
    return f"https://modelpinci.blob.core.windows.net/artifacts/{path}"


def lookups_metric(registry: str = "mlflow") -> float:
    value = PROMETHEUS.get_sample_value("modelpin_registry_lookups_total", {"registry": registry})
    return value or 0.0


def decode_patch(response: dict[str, Any] | Any) -> list[dict[str, Any]]:
    patch = response.get("patch")
    if not patch:
        return []
    ops: list[dict[str, Any]] = orjson.loads(base64.b64decode(patch))
    return ops


def apply_response(obj: dict[str, Any], response: dict[str, Any] | Any) -> dict[str, Any]:
    assert response["allowed"], response.get("status")
    ops = decode_patch(response)
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(obj), ops) if ops else copy.deepcopy(obj)
    return result


def served_certificate(server_context: ssl.SSLContext, ca_file: Path, hostname: str = "localhost") -> bytes:
    """Handshake in memory with a client trusting ``ca_file``; the DER certificate the server presented."""
    client_context = ssl.create_default_context(cafile=str(ca_file))
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    assert all(done.values()), "handshake did not complete"
    der = client.getpeercert(binary_form=True)
    assert der is not None
    return der


def bump_mtime(*paths: Path, seconds: int = 1) -> None:
    """Give rewritten files a distinct mtime, as real rotations minutes apart have."""
    for path in paths:
        ns = path.stat().st_mtime_ns + seconds * 1_000_000_000
        os.utime(path, ns=(ns, ns))


@contextlib.asynccontextmanager
async def webhook_client(registry: FakeRegistry, max_body_bytes: int) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling the webhook's ASGI app in-process, over ``registry``."""
    resolver = Resolver(make_settings(max_body_bytes=max_body_bytes), {"mlflow": registry})
    app = create_app(ServerState(resolver=resolver))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://modelpin.test") as c:
        yield c
    await resolver.aclose()
