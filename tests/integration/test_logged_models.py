"""MLmodel flavors and logged models read from a real ``mlflow server`` with proxied artifacts.

The models are logged by MLflow itself (``mlflow.sklearn.log_model``, a custom
``mlflow.pyfunc.PythonModel``), so the MLmodel files are the ones MLflow writes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import mlflow
import numpy as np
import pytest
from mlflow.pyfunc.model import PythonModel
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

from tests.support.mlflow_server import MlflowServer
from webhook.registry.clients import NotFound
from webhook.registry.logged_models import get_logged_model
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


@pytest.fixture(scope="module")
def logged(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Logged:
    suffix = uuid.uuid4().hex[:8]
    mlflow.set_tracking_uri(mlflow_server.url)
    client = MlflowClient(mlflow_server.url)
    names = Logged(f"sv-sk-{suffix}", "", f"sv-pyfunc-{suffix}", f"sv-bare-{suffix}", f"sv-s3-{suffix}")
    x, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            LogisticRegression().fit(x, y), name="model", registered_model_name=names.sklearn_model
        )
        mlflow.pyfunc.log_model(name="echo", python_model=Echo(), registered_model_name=names.pyfunc_model)
        bare = tmp_path_factory.mktemp("bare") / "weights.txt"
        bare.write_text("not an MLflow model")
        mlflow.log_artifact(str(bare), artifact_path="bare")
    for name in (names.bare_model, names.s3_model):
        client.create_registered_model(name)
    client.create_model_version(names.bare_model, f"{run.info.artifact_uri}/bare", run_id=run.info.run_id)
    client.create_model_version(names.s3_model, f"s3://modelpin-unreadable-{suffix}/1/model")
    return Logged(names.sklearn_model, info.model_id, names.pyfunc_model, names.bare_model, names.s3_model)


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
