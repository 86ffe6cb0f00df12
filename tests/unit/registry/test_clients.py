"""The registry clients: every failure of a call is "unavailable", and its detail stays in the log.

The REST client runs its real code over httpx transports that fail the way the
HTTP stack has failed in production (an ``AttributeError`` from a reset
connection), answer 500 with a store URI in the body, or answer garbage. The
local client runs a real ``MlflowClient`` whose store raises.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY as PROMETHEUS

from tests.support.admitting import response_to
from tests.support.fakes import make_settings
from webhook.admission.review import AdmissionRequest
from webhook.config import RegistryConfig
from webhook.registry.clients import (
    LocalRegistry,
    NotFound,
    RegistryError,
    RestRegistry,
    Unavailable,
    registered_model_from_json,
    version_from_json,
)
from webhook.registry.logged_models import LoggedModelsUnsupported
from webhook.registry.resolver import ResolutionError, Resolver, plan
from webhook.registry.servability import Flavors, NotChecked
from webhook.templating.causes import Cause
from webhook.templating.grammar import parse

SECRET = "postgresql://user:s3cret@db/mlflow"
ALIAS_BODY = {
    "model_version": {
        "name": "fraud",
        "version": "2",
        "status": "READY",
        "current_stage": "Production",
        "source": "s3://mlflow/7/r2/artifacts/model",
        "run_id": "r2",
    }
}


class Raising(httpx.AsyncBaseTransport):
    """A transport that raises whatever it is given, as a broken HTTP stack does."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise self.exc


def rest(transport: httpx.AsyncBaseTransport, name: str = "mlflow") -> RestRegistry:
    return RestRegistry(name, RegistryConfig(tracking_uri="http://mlflow.invalid"), transport)


def errors(registry: str, kind: str) -> float:
    return PROMETHEUS.get_sample_value("modelpin_registry_errors_total", {"registry": registry, "kind": kind}) or 0.0


@pytest.mark.parametrize(
    ("exc", "kind", "message"),
    [
        (
            AttributeError("'NoneType' object has no attribute 'getpeername'"),
            "unexpected",
            "registry 'reset-test' did not answer (the call failed unexpectedly)",
        ),
        (RuntimeError(f"could not reach {SECRET}"), "unexpected", None),
        (
            httpx.ConnectError(f"refused by {SECRET}"),
            "connection",
            "registry 'reset-test' did not answer (connection failed)",
        ),
        (httpx.ReadTimeout("slow"), "timeout", "registry 'reset-test' did not answer in time"),
    ],
)
async def test_any_exception_from_the_http_stack_is_unavailable(
    exc: BaseException, kind: str, message: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    client = rest(Raising(exc), "reset-test")
    before = errors("reset-test", kind)
    with caplog.at_level(logging.WARNING, "modelpin.registry"), pytest.raises(Unavailable) as info:
        await client.get_alias("fraud", "champion")
    assert info.value.kind == kind
    assert errors("reset-test", kind) == before + 1
    if message is not None:
        assert str(info.value) == message
    assert "s3cret" not in str(info.value)
    assert str(exc) in caplog.text  # the detail is in the log, for the operator
    await client.aclose()


async def test_a_500_body_goes_to_the_log_not_the_message(caplog: pytest.LogCaptureFixture) -> None:
    body = {"error_code": "INTERNAL_ERROR", "message": f"(OperationalError) could not connect to {SECRET}"}
    client = rest(httpx.MockTransport(lambda request: httpx.Response(500, json=body)))
    with caplog.at_level(logging.WARNING, "modelpin.registry"), pytest.raises(Unavailable) as info:
        await client.get_version("fraud", "2")
    assert (str(info.value), info.value.kind) == ("registry 'mlflow' answered 500", "server_error")
    assert SECRET in caplog.text


@pytest.mark.parametrize("content", [b"<html>proxy error</html>", b"[1, 2]"])
async def test_a_200_that_is_not_an_mlflow_answer_is_unavailable(content: bytes) -> None:
    client = rest(httpx.MockTransport(lambda request: httpx.Response(200, content=content)))
    with pytest.raises(Unavailable) as info:
        await client.get_version("fraud", "2")
    assert info.value.kind == "bad_response"


@pytest.mark.parametrize(
    ("call", "body"),
    [
        ("get_version", {}),
        ("get_version", {"model_version": {"name": "fraud"}}),
        ("get_alias", {"model_version": None}),
        ("download_uri", {"artifact": "s3://x"}),
        ("run_artifact_uri", {"run": {"info": []}}),
        ("search_versions", {"model_versions": [{"version": "1"}]}),
    ],
)
async def test_a_200_without_the_fields_read_is_unavailable(call: str, body: dict[str, object]) -> None:
    client = rest(httpx.MockTransport(lambda request: httpx.Response(200, json=body)))
    args = {"get_version": ("fraud", "2"), "get_alias": ("fraud", "champion"), "download_uri": ("fraud", "2")}
    with pytest.raises(Unavailable) as info:
        await getattr(client, call)(*args.get(call, ("fraud",)))
    assert info.value.kind == "bad_response"


async def test_missing_and_refused_are_not_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/alias"):
            return httpx.Response(400, json={"error_code": "INVALID_PARAMETER_VALUE", "message": "alias x not found"})
        return httpx.Response(200, json=ALIAS_BODY)

    client = rest(httpx.MockTransport(handler))
    with pytest.raises(NotFound):
        await client.get_alias("fraud", "x")
    assert (await client.get_version("fraud", "2")).version == "2"


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_are_unavailable_with_their_own_kind(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"error_code": "PERMISSION_DENIED", "message": f"token for {SECRET} expired"}
    client = rest(httpx.MockTransport(lambda request: httpx.Response(status, json=body)), "creds-test")
    before = errors("creds-test", "refused_credentials")
    with caplog.at_level(logging.WARNING, "modelpin.registry"), pytest.raises(Unavailable) as info:
        await client.get_alias("fraud", "champion")
    assert (str(info.value), info.value.kind) == (
        f"registry 'creds-test' refused modelpin's credentials ({status})",
        "refused_credentials",
    )
    assert errors("creds-test", "refused_credentials") == before + 1
    assert SECRET in caplog.text and SECRET not in str(info.value)
    await client.aclose()


async def test_other_4xx_text_goes_to_the_log_not_the_message(caplog: pytest.LogCaptureFixture) -> None:
    body = {"error_code": "BAD_REQUEST", "message": f"malformed, see {SECRET}"}
    client = rest(httpx.MockTransport(lambda request: httpx.Response(400, json=body)))
    with caplog.at_level(logging.WARNING, "modelpin.registry"), pytest.raises(RegistryError) as info:
        await client.get_version("fraud", "2")
    assert not isinstance(info.value, Unavailable)
    assert SECRET not in str(info.value) and SECRET in caplog.text
    await client.aclose()


def _bearer(secret: str) -> str:
    return f"Bearer {secret}"


def _basic(secret: str) -> str:
    return "Basic " + base64.b64encode(f"modelpin:{secret}".encode()).decode()


@pytest.mark.parametrize("kind", ["token", "password"])
async def test_a_rotated_secret_file_is_used_without_restart(tmp_path: Path, kind: str) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json=ALIAS_BODY)

    secret = tmp_path / "secret"
    secret.write_text("first\n")
    fields: dict[str, Any] = (
        {"token_file": secret} if kind == "token" else {"username": "modelpin", "password_file": secret}
    )
    header = _bearer if kind == "token" else _basic
    config = RegistryConfig(tracking_uri="http://mlflow.invalid", **fields)
    client = RestRegistry("mlflow", config, httpx.MockTransport(handler))
    await client.get_version("fraud", "2")
    secret.write_text("second\n")  # rewritten in place
    await client.get_version("fraud", "2")
    # a Secret volume swaps the file for a new one
    fresh = tmp_path / "secret.new"
    fresh.write_text("third-longer\n")
    fresh.replace(secret)
    await client.get_version("fraud", "2")
    secret.unlink()  # mid-swap: the last secret read is still used
    await client.get_version("fraud", "2")
    assert seen == [header("first"), header("second"), header("third-longer"), header("third-longer")]
    await client.aclose()


def _review(uri: str) -> AdmissionRequest:
    obj = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "x", "namespace": "default"},
        "spec": {"predictor": {"model": {"storageUri": uri}}},
    }
    request: AdmissionRequest = {
        "uid": "u",
        "kind": {"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService"},
        "namespace": "default",
        "operation": "CREATE",
        "object": obj,
        "dryRun": False,
    }
    return request


class Switch(httpx.AsyncBaseTransport):
    """Answers like MLflow until told to fail with ``failure``."""

    def __init__(self) -> None:
        self.failure: Callable[[], httpx.Response] | None = None
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.failure is not None:
            return self.failure()
        return httpx.Response(200, json=ALIAS_BODY)


def _raise_with_secret() -> httpx.Response:
    raise AttributeError(f"'NoneType' object has no attribute 'getpeername' ({SECRET})")


@pytest.mark.parametrize(
    "failure",
    [
        _raise_with_secret,
        lambda: httpx.Response(503, json={"error_code": "TEMPORARILY_UNAVAILABLE", "message": SECRET}),
    ],
    ids=["exception", "503"],
)
async def test_admission_turns_registry_failures_into_stale_answers_and_503s_without_the_detail(
    failure: Callable[[], httpx.Response], caplog: pytest.LogCaptureFixture
) -> None:
    transport = Switch()
    settings = make_settings(cache={"pinned_ttl_seconds": 0, "floating_ttl_seconds": 0, "max_stale_seconds": 600})
    resolver = Resolver(settings, {"mlflow": RestRegistry("mlflow", settings.registries["mlflow"], transport)})
    try:
        warm = await response_to(_review("models:/fraud@champion"), resolver=resolver)
        assert warm["allowed"] and not warm.get("warnings")
        transport.failure = failure
        with caplog.at_level(logging.WARNING, "modelpin.registry"):
            stale = await response_to(_review("models:/fraud@champion"), resolver=resolver)
            cold = await response_to(_review("models:/fraud/2"), resolver=resolver)
        assert stale["allowed"] and stale["warnings"]
        assert "serving version 2" in stale["warnings"][0]
        assert not cold["allowed"] and cold["status"]["code"] == 503
        assert "'models:/fraud/2'" in cold["status"]["message"]
        assert "no usable cached resolution" in cold["status"]["message"]
        for answer in (stale, cold):
            assert "s3cret" not in str(answer)
        assert SECRET in caplog.text
    finally:
        await resolver.aclose()


async def test_local_store_errors_are_unavailable_without_the_store_uri(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.exceptions import MlflowException

    registry = LocalRegistry("local-test", f"sqlite:///{tmp_path / 'mlflow.db'}")

    def broken(*args: object) -> None:
        raise MlflowException(f"(sqlite3.OperationalError) unable to open {SECRET}")

    def driver(*args: object) -> None:
        raise OSError(f"connection to {SECRET} refused")

    for fake in (broken, driver):
        monkeypatch.setattr(registry._client, "get_model_version_by_alias", fake)
        with caplog.at_level(logging.WARNING, "modelpin.registry"), pytest.raises(Unavailable) as info:
            await registry.get_alias("fraud", "champion")
        assert "s3cret" not in str(info.value)
        assert str(info.value).startswith("registry 'local-test' failed")
    assert SECRET in caplog.text

    settings = make_settings()
    resolver = Resolver(settings, {"mlflow": registry})
    with pytest.raises(ResolutionError) as failed:
        await resolver.resolve(plan(parse("models:/fraud@champion"), "default", settings))
    assert failed.value.cause is Cause.UNAVAILABLE and "s3cret" not in str(failed.value)


LOGGED_ID = "m-" + "c3" * 16


async def test_logged_model_on_an_mlflow2_server_is_unsupported_not_missing() -> None:
    html = b"<!doctype html><title>404 Not Found</title>"
    client = rest(
        httpx.MockTransport(
            lambda request: httpx.Response(404, content=html, headers={"content-type": "text/html; charset=utf-8"})
        )
    )
    with pytest.raises(LoggedModelsUnsupported, match=r"MLflow 2\): models:/m-c3.* needs MLflow 3"):
        await client.logged_model(LOGGED_ID)
    with pytest.raises(LoggedModelsUnsupported):
        await client.logged_model_artifact_uri(LOGGED_ID)
    await client.aclose()


async def test_logged_model_failures_are_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(Unavailable, match="connection failed"):
        await rest(httpx.MockTransport(refuse)).logged_model(LOGGED_ID)
    down = rest(httpx.MockTransport(lambda request: httpx.Response(503, json={"error_code": "X"})))
    with pytest.raises(Unavailable, match="503"):
        await down.logged_model(LOGGED_ID)


async def test_the_flavor_reader_reads_from_the_tracking_servers_root() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, content=b"flavors:\n  sklearn: {}\n")

    reader = rest(httpx.MockTransport(answer)).flavor_reader()
    read = await reader.read("mlflow-artifacts:/1/abc/artifacts/model")
    assert isinstance(read, Flavors) and read.names == {"sklearn"}
    assert seen == ["/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/MLmodel"]


async def test_local_registry_reads_logged_models(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("lm", artifact_location=str(tmp_path / "artifacts"))
    logged = client.create_logged_model(experiment_id=experiment, name="model")
    registry = LocalRegistry("local", uri)
    pending = await registry.logged_model(logged.model_id)
    assert not pending.ready and pending.status == "LOGGED_MODEL_PENDING"
    client.finalize_logged_model(logged.model_id, "READY")
    ready = await registry.logged_model(logged.model_id)
    assert ready.ready and ready.artifact_uri == logged.artifact_location
    with pytest.raises(NotFound):
        await registry.logged_model("m-" + "0" * 32)
    # no tracking server: local folders only, and only when allowed
    assert isinstance(await registry.flavor_reader().read("s3://b/m", model="x", version="1"), NotChecked)


@pytest.mark.parametrize(
    "tags", [[{"key": "validated", "value": "true"}, {"key": "owner"}], {"validated": "true", "owner": ""}]
)
def test_version_tags_are_read_as_a_list_of_pairs_or_a_mapping(tags: Any) -> None:
    version = version_from_json({"name": "fraud", "version": "2", "tags": tags})
    assert version.tags == {"validated": "true", "owner": ""}


@pytest.mark.parametrize(
    "aliases", [[{"alias": "champion", "version": "2"}, {"alias": "canary"}], {"champion": "2", "canary": ""}]
)
def test_model_aliases_are_read_as_a_list_of_pairs_or_a_mapping(aliases: Any) -> None:
    model = registered_model_from_json({"name": "fraud", "aliases": aliases})
    assert model.aliases == {"champion": "2", "canary": ""}


@pytest.mark.parametrize("missing", [{}, {"tags": None, "aliases": None}, {"tags": [], "aliases": {}}])
def test_absent_tags_and_aliases_are_empty(missing: dict[str, Any]) -> None:
    assert version_from_json({"name": "fraud", "version": "2", **missing}).tags == {}
    assert registered_model_from_json({"name": "fraud", **missing}).aliases == {}
