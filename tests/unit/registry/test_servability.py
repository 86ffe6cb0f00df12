from __future__ import annotations

from pathlib import Path

import httpx
import pytest

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
    judge,
    parse_mlmodel,
    reverse_artifact_root,
)
from webhook.templating.flavors import Need

SKLEARN = (
    b"artifact_path: model\nflavors:\n  python_function:\n    loader_module: mlflow.sklearn\n"
    b"  sklearn:\n    pickled_model: model.pkl\n"
)
NEED_SKLEARN = Need("sklearn", "SKLEARN_SERVER", "/spec/predictors/0/graph/implementation")
NEED_PYFUNC = Need("python_function", "MLFLOW_SERVER", "/spec/predictors/0/graph/implementation")
MISSING = b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "No such artifact"}'


def reader(handler: httpx.MockTransport, **kwargs: object) -> MLmodelReader:
    client = httpx.AsyncClient(base_url="http://mlflow:5000", transport=handler)
    return MLmodelReader(client, **kwargs)  # type: ignore[arg-type]


class Recorder:
    def __init__(self, status: int = 200, body: bytes = SKLEARN) -> None:
        self.status = status
        self.body = body
        self.urls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        return httpx.Response(self.status, content=self.body)


def test_judge() -> None:
    found = Flavors(frozenset({"sklearn", "python_function"}), "x/MLmodel")
    assert judge(found, NEED_SKLEARN) == Servable(found.names, NEED_SKLEARN)
    assert judge(found, None) == Servable(found.names, None)
    pyfunc_only = Flavors(frozenset({"python_function"}), "x/MLmodel")
    mismatch = judge(pyfunc_only, NEED_SKLEARN)
    assert mismatch == Mismatch(NEED_SKLEARN, frozenset({"python_function"}))
    assert isinstance(mismatch, Mismatch)
    assert "SKLEARN_SERVER" in mismatch.message("iris/3") and "python_function" in mismatch.message("iris/3")
    assert judge(Missing("x/MLmodel"), NEED_SKLEARN) == NoMLmodel("x/MLmodel")
    assert judge(NotChecked("why"), NEED_SKLEARN) == NotChecked("why")


@pytest.mark.parametrize("text", [b"{not yaml", b"- a list", b"flavors: 3", b"artifact_path: x"])
def test_parse_mlmodel_refuses_what_is_not_an_mlmodel(text: bytes) -> None:
    assert isinstance(parse_mlmodel(text, "w"), NotChecked)


def test_reverse_artifact_root_longest_target_wins() -> None:
    roots = {"mlflow-artifacts:/": "s3://mlflow/", "mlflow-artifacts:/9/": "s3://other/nine/", "s3a://": "s3://"}
    assert reverse_artifact_root("s3://mlflow/7/r/model", roots) == "mlflow-artifacts:/7/r/model"
    assert reverse_artifact_root("s3://other/nine/r/model", roots) == "mlflow-artifacts:/9/r/model"
    assert reverse_artifact_root("gs://x/y", roots) is None


async def test_proxied_location_is_read_through_the_artifact_proxy() -> None:
    rec = Recorder()
    read = await reader(httpx.MockTransport(rec)).read("mlflow-artifacts:/0/models/m-1/artifacts")
    assert read == Flavors(
        frozenset({"sklearn", "python_function"}), "mlflow-artifacts:/0/models/m-1/artifacts/MLmodel"
    )
    assert rec.urls == ["http://mlflow:5000/api/2.0/mlflow-artifacts/artifacts/0/models/m-1/artifacts/MLmodel"]


async def test_mapped_location_is_read_through_the_proxy() -> None:
    rec = Recorder()
    r = reader(httpx.MockTransport(rec), artifact_roots={"mlflow-artifacts:/": "s3://mlflow/"})
    assert isinstance(await r.read("s3://mlflow/1/abc/artifacts/model"), Flavors)
    assert rec.urls == ["http://mlflow:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/MLmodel"]


async def test_other_locations_go_through_the_version_route_or_are_not_checked() -> None:
    rec = Recorder()
    r = reader(httpx.MockTransport(rec))
    assert isinstance(await r.read("s3://b/p", model="iris demo", version="3"), Flavors)
    assert rec.urls == ["http://mlflow:5000/model-versions/get-artifact?name=iris+demo&version=3&path=MLmodel"]
    assert isinstance(await r.read("s3://b/p", logged_model="m-0a"), Flavors)
    assert (
        rec.urls[1]
        == "http://mlflow:5000/ajax-api/2.0/mlflow/logged-models/m-0a/artifacts/files?artifact_file_path=MLmodel"
    )
    found = await r.read("s3://b/p")
    assert isinstance(found, NotChecked) and "s3" in found.reason
    assert len(rec.urls) == 2


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, MISSING, Missing),
        (404, b"<html>Not Found</html>", NotChecked),  # no such route: an old server or a proxy
        (500, b"NoCredentialsError", NotChecked),
        (403, b"", NotChecked),
        (200, b"x" * 300_000, NotChecked),  # over the byte bound
    ],
)
async def test_answers(status: int, body: bytes, expected: type) -> None:
    read = await reader(httpx.MockTransport(Recorder(status, body))).read("mlflow-artifacts:/0/m")
    assert isinstance(read, expected)


async def test_transport_failure_is_not_checked_and_retried() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    read = await reader(httpx.MockTransport(fail)).read("mlflow-artifacts:/0/m")
    assert isinstance(read, NotChecked) and read.retry


async def test_local_files_only_when_enabled(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "MLmodel").write_bytes(SKLEARN)
    (tmp_path / "bare").mkdir()
    unused = httpx.MockTransport(Recorder(500))
    off = reader(unused)
    assert isinstance(await off.read(str(tmp_path / "model")), NotChecked)
    on = reader(unused, read_local=True)
    assert isinstance(await on.read(f"file://{tmp_path / 'model'}"), Flavors)
    assert isinstance(await on.read(str(tmp_path / "model")), Flavors)
    assert await on.read(str(tmp_path / "bare")) == Missing(str(tmp_path / "bare" / "MLmodel"))
    assert isinstance(await on.read(str(tmp_path / "absent")), NotChecked)


async def test_cache_hit_makes_no_request_and_judges_anew() -> None:
    rec = Recorder()
    r, cache = reader(httpx.MockTransport(rec)), FlavorCache()
    key = ("mlflow", "iris", "3")
    assert isinstance(await check(r, cache, key, "mlflow-artifacts:/0/m", NEED_SKLEARN), Servable)
    need = Need("xgboost", "XGBOOST_SERVER", "/spec/x")
    assert isinstance(await check(r, cache, key, "mlflow-artifacts:/0/m", need), Mismatch)
    assert len(rec.urls) == 1


def test_cache_is_bounded_and_passing_failures_expire() -> None:
    now = [0.0]
    cache = FlavorCache(max_entries=2, clock=lambda: now[0])
    cache.put("a", Missing("a"))
    cache.put("b", NotChecked("down", retry=True))
    cache.put("c", NotChecked("s3 location"))
    assert len(cache) == 2 and cache.get("a") is None
    now[0] = 61.0
    assert cache.get("b") is None
    assert cache.get("c") == NotChecked("s3 location")
