"""MLmodel flavors and logged models read from a real ``mlflow server`` with proxied artifacts.

The models are logged by MLflow itself (``mlflow.sklearn.log_model``, a custom
``mlflow.pyfunc.PythonModel``), so the MLmodel files are the ones MLflow writes.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pytest
import yaml
from mlflow.pyfunc.model import PythonModel
from mlflow.tracking import MlflowClient
from prometheus_client import REGISTRY as PROMETHEUS
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

from tests.support.cli import modelpin
from tests.support.mlflow_server import MlflowServer
from tests.support.modelpin_server import PROXIED_ROOT, modelpin_config
from webhook.config import Settings
from webhook.registry.clients import NotFound, open_registry
from webhook.registry.logged_models import get_logged_model
from webhook.registry.resolver import ResolutionError, Resolver
from webhook.registry.servability import (
    FlavorCache,
    Flavors,
    Mismatch,
    Missing,
    MLmodelReader,
    NoMLmodel,
    NotChecked,
    Servable,
    check,
)
from webhook.templating.causes import Cause
from webhook.templating.flavors import Need
from webhook.templating.grammar import SelectorKind, parse

SKLEARN_SERVER = Need("sklearn", "SKLEARN_SERVER", "/spec/predictors/0/graph/implementation")
MLFLOW_SERVER = Need("python_function", "MLFLOW_SERVER", "/spec/predictors/0/graph/implementation")


class Echo(PythonModel):
    def predict(self, context: object, model_input: list[str], params: object = None) -> list[str]:
        return model_input


@dataclass(frozen=True)
class Logged:
    sklearn_model: str  # registered name; version 1
    sklearn_id: str  # what log_model returned as models:/m-<id>
    pyfunc_model: str
    bare_model: str  # a version whose folder holds no MLmodel
    s3_model: str  # a version at an s3:// location no one here can read
    onnx_model: str = ""  # a version whose MLmodel names the onnx flavor only (no python_function)


@pytest.fixture(scope="module")
def logged(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Logged:
    suffix = uuid.uuid4().hex[:8]
    mlflow.set_tracking_uri(mlflow_server.url)
    client = MlflowClient(mlflow_server.url)
    names = Logged(
        f"sv-sk-{suffix}", "", f"sv-pyfunc-{suffix}", f"sv-bare-{suffix}", f"sv-s3-{suffix}", f"sv-onnx-{suffix}"
    )
    x, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(x, y), name="model", registered_model_name=names.sklearn_model
        )
        mlflow.pyfunc.log_model(name="echo", python_model=Echo(), registered_model_name=names.pyfunc_model)
        bare = tmp_path_factory.mktemp("bare") / "weights.txt"
        bare.write_text("not an MLflow model")
        mlflow.log_artifact(str(bare), artifact_path="bare")
        onnx = tmp_path_factory.mktemp("onnx")
        (onnx / "MLmodel").write_text("artifact_path: onnx\nflavors:\n  onnx:\n    data: model.onnx\n")
        mlflow.log_artifacts(str(onnx), artifact_path="onnx")
    for name in (names.bare_model, names.s3_model, names.onnx_model):
        client.create_registered_model(name)
    client.create_model_version(names.bare_model, f"{run.info.artifact_uri}/bare", run_id=run.info.run_id)
    client.create_model_version(names.s3_model, f"s3://modelpin-unreadable-{suffix}/1/model")
    client.create_model_version(names.onnx_model, f"{run.info.artifact_uri}/onnx", run_id=run.info.run_id)
    return Logged(
        names.sklearn_model, info.model_id, names.pyfunc_model, names.bare_model, names.s3_model, names.onnx_model
    )


@pytest.fixture
async def http(mlflow_server: MlflowServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mlflow_server.url, timeout=30) as client:
        yield client


async def download_uri(http: httpx.AsyncClient, name: str) -> str:
    response = await http.get("/api/2.0/mlflow/model-versions/get-download-uri", params={"name": name, "version": "1"})
    response.raise_for_status()
    return str(response.json()["artifact_uri"])


async def test_sklearn_model_has_the_flavors_mlflow_wrote(logged: Logged, http: httpx.AsyncClient) -> None:
    location = await download_uri(http, logged.sklearn_model)
    assert location.startswith("mlflow-artifacts:/")
    read = await MLmodelReader(http).read(location)
    assert isinstance(read, Flavors)
    assert {"sklearn", "python_function"} <= read.names
    cache = FlavorCache()
    key = ("mlflow", logged.sklearn_model, "1")
    assert isinstance(await check(MLmodelReader(http), cache, key, location, SKLEARN_SERVER), Servable)
    assert isinstance(await check(MLmodelReader(http), cache, key, location, MLFLOW_SERVER), Servable)


async def test_custom_pyfunc_runs_on_an_mlflow_server_not_on_a_sklearn_one(
    logged: Logged, http: httpx.AsyncClient
) -> None:
    location = await download_uri(http, logged.pyfunc_model)
    reader, cache, key = MLmodelReader(http), FlavorCache(), ("mlflow", logged.pyfunc_model, "1")
    mismatch = await check(reader, cache, key, location, SKLEARN_SERVER)
    assert isinstance(mismatch, Mismatch)
    assert "sklearn" not in mismatch.found and "python_function" in mismatch.found
    assert "SKLEARN_SERVER" in mismatch.message(f"{logged.pyfunc_model}/1")
    assert isinstance(await check(reader, cache, key, location, MLFLOW_SERVER), Servable)


async def test_a_folder_without_mlmodel_is_reported_missing(logged: Logged, http: httpx.AsyncClient) -> None:
    location = await download_uri(http, logged.bare_model)
    read = await MLmodelReader(http).read(location)
    assert read == Missing(f"{location}/MLmodel")
    assert isinstance(await check(MLmodelReader(http), FlavorCache(), "k", location, SKLEARN_SERVER), NoMLmodel)


async def test_a_mapped_location_is_read_back_through_the_proxy(logged: Logged, http: httpx.AsyncClient) -> None:
    location = await download_uri(http, logged.sklearn_model)
    mapped = "s3://mlflow/" + location[len("mlflow-artifacts:/") :]
    read = await MLmodelReader(http, artifact_roots={"mlflow-artifacts:/": "s3://mlflow/"}).read(mapped)
    assert isinstance(read, Flavors) and "sklearn" in read.names


async def test_an_s3_location_nobody_here_can_read_is_not_checked(logged: Logged, http: httpx.AsyncClient) -> None:
    location = await download_uri(http, logged.s3_model)
    assert location.startswith("s3://")
    reader = MLmodelReader(http)
    # without the version: nothing to ask
    assert isinstance(await reader.read(location), NotChecked)
    # through the server's version route: the server has no credentials for it either
    read = await reader.read(location, model=logged.s3_model, version="1")
    assert isinstance(read, NotChecked), read
    assert isinstance(await check(reader, FlavorCache(), "k", location, SKLEARN_SERVER), NotChecked)


async def test_logged_model_id_from_log_model_resolves_to_its_flavors(
    logged: Logged, mlflow_server: MlflowServer, http: httpx.AsyncClient
) -> None:
    template = parse(f"models:/{logged.sklearn_id}")
    assert template.reference.selector.kind is SelectorKind.LOGGED_MODEL
    async with httpx.AsyncClient(base_url=f"{mlflow_server.url}/api/2.0/mlflow", timeout=30) as api:
        model = await get_logged_model(api, template.reference.name)
        assert model.ready and model.model_id == logged.sklearn_id
        assert model.artifact_uri.startswith("mlflow-artifacts:/")
        with pytest.raises(NotFound):
            await get_logged_model(api, "m-" + "0" * 32)
    read = await MLmodelReader(http).read(model.artifact_uri)
    assert isinstance(read, Flavors) and "sklearn" in read.names
    # the logged-model route of the server reads it by id as well
    by_id = await MLmodelReader(http).read("s3://elsewhere/x", logged_model=logged.sklearn_id)
    assert isinstance(by_id, Flavors) and "sklearn" in by_id.names


# --- wired end to end: the resolver's registry client, and modelpin render ----------------------


def settings_for(server: MlflowServer, **overrides: Any) -> Settings:
    return Settings.model_validate(modelpin_config(server.url, **overrides))


async def test_resolver_pins_a_logged_model_and_judges_flavors_from_memory(
    logged: Logged, mlflow_server: MlflowServer
) -> None:
    settings = settings_for(mlflow_server, servability="deny")
    resolver = Resolver(settings, {"mlflow": open_registry("mlflow", settings.registries["mlflow"])})
    try:
        planned = resolver.plan(parse(f"models:/{logged.sklearn_id}"), "default")
        res = (await resolver.resolve(planned)).resolution
        assert res.version.version == logged.sklearn_id and res.version.model_id == logged.sklearn_id
        # the logged model's own location, mapped through the proxied artifact root
        assert res.location.startswith(PROXIED_ROOT) and logged.sklearn_id in res.location
        assert isinstance(resolver.servable(res, SKLEARN_SERVER), Servable)
        pyfunc = (await resolver.resolve(resolver.plan(parse(f"models:/{logged.pyfunc_model}/1"), None))).resolution
        mismatch = resolver.servable(pyfunc, SKLEARN_SERVER)
        assert isinstance(mismatch, Mismatch) and mismatch.found >= {"python_function"}
        s3 = (await resolver.resolve(resolver.plan(parse(f"models:/{logged.s3_model}/1"), None))).resolution
        assert isinstance(resolver.servable(s3, SKLEARN_SERVER), NotChecked)
        before = lookups_sent()
        hit = resolver.cached(planned)
        assert hit is not None and isinstance(resolver.servable(hit.resolution, MLFLOW_SERVER), Servable)
        assert lookups_sent() == before
    finally:
        await resolver.aclose()


async def test_a_missing_logged_model_is_denied_as_not_found(mlflow_server: MlflowServer) -> None:
    settings = settings_for(mlflow_server)
    resolver = Resolver(settings, {"mlflow": open_registry("mlflow", settings.registries["mlflow"])})
    try:
        with pytest.raises(ResolutionError, match="has no logged model") as info:
            await resolver.resolve(resolver.plan(parse("models:/m-" + "0" * 32), None))
        assert info.value.cause is Cause.NOT_FOUND
    finally:
        await resolver.aclose()


def lookups_sent() -> float:
    return PROMETHEUS.get_sample_value("modelpin_registry_lookups_total", {"registry": "mlflow"}) or 0.0


def isvc(name: str, storage_uri: str, model_format: str = "sklearn") -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": model_format}, "storageUri": storage_uri}}},
    }


def seldon(name: str, model_uri: str, implementation: str) -> dict[str, Any]:
    graph = {"name": "model", "implementation": implementation, "modelUri": model_uri}
    return {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"predictors": [{"name": "default", "graph": graph}]},
    }


@pytest.fixture(scope="module")
def render_config(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("render") / "modelpin.yaml"
    path.write_text(yaml.safe_dump(modelpin_config(mlflow_server.url)))
    return path


def render(config: Path, *docs: dict[str, Any], flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return modelpin("render", "--config", str(config), *flags, stdin=yaml.safe_dump_all(docs))


def test_render_refuses_a_sklearn_server_on_a_pyfunc_version(logged: Logged, render_config: Path) -> None:
    result = render(render_config, isvc("pyfunc", f"models:/{logged.pyfunc_model}/1"))
    assert result.returncode == 1, result.stderr
    message = result.stderr
    assert "/spec/predictor/model/storageUri" in message and f"{logged.pyfunc_model}" in message
    assert "version 1" in message and "'sklearn' flavor" in message and "python_function" in message
    assert result.stdout == ""
    # the same manifest on the sklearn version passes, and so does the logged model by id
    ok = render(
        render_config,
        isvc("sk", f"models:/{logged.sklearn_model}/1"),
        isvc("by-id", f"models:/{logged.sklearn_id}"),
    )
    assert ok.returncode == 0, ok.stderr
    by_version, by_id = yaml.safe_load_all(ok.stdout)
    assert by_version["spec"]["predictor"]["model"]["storageUri"].startswith(PROXIED_ROOT)
    assert by_id["spec"]["predictor"]["model"]["storageUri"].startswith(PROXIED_ROOT)
    assert logged.sklearn_id in by_id["spec"]["predictor"]["model"]["storageUri"]
    assert "INFO" not in ok.stderr  # MLflow's own log lines stay out of render's output


def test_render_refuses_an_mlflow_server_without_python_function(logged: Logged, render_config: Path) -> None:
    onnx = seldon("onnx", f"models:/{logged.onnx_model}/1", "MLFLOW_SERVER")
    result = render(render_config, onnx)
    assert result.returncode == 1, result.stderr
    assert "/spec/predictors/0/graph/modelUri" in result.stderr and "MLFLOW_SERVER" in result.stderr
    assert "'python_function' flavor" in result.stderr and "onnx" in result.stderr
    # warn reports it and renders; off does not look
    warned = render(render_config, onnx, flags=("--servability", "warn"))
    assert warned.returncode == 0 and "warning:" in warned.stderr and "python_function" in warned.stderr
    off = render(render_config, onnx, flags=("--servability", "off"))
    assert off.returncode == 0 and "python_function" not in off.stderr


def test_render_reports_an_unreadable_s3_version_as_not_checked(logged: Logged, render_config: Path) -> None:
    result = render(render_config, isvc("s3", f"models:/{logged.s3_model}/1"))
    assert result.returncode == 0, result.stderr
    assert "not checked" in result.stderr
