from __future__ import annotations

import httpx
import orjson
import pytest

from webhook.registry.clients import NotFound, RegistryError
from webhook.registry.logged_models import LoggedModelsUnsupported, get_logged_model

ID = "m-1833a7bca7654c44b66e27fb3aa9cf36"
BODY = {
    "model": {
        "info": {
            "model_id": ID,
            "experiment_id": "0",
            "name": "model",
            "artifact_uri": f"mlflow-artifacts:/0/models/{ID}/artifacts",
            "status": "LOGGED_MODEL_READY",
            "source_run_id": "b7ae",
            "tags": [{"key": "k", "value": "v"}],
        }
    }
}


def client(status: int, body: bytes, content_type: str = "application/json") -> httpx.AsyncClient:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/api/2.0/mlflow/logged-models/{ID}"
        return httpx.Response(status, content=body, headers={"content-type": content_type})

    return httpx.AsyncClient(base_url="http://mlflow/api/2.0/mlflow", transport=httpx.MockTransport(answer))


async def test_reads_the_logged_model() -> None:
    found = await get_logged_model(client(200, orjson.dumps(BODY)), ID)
    assert found.artifact_uri == f"mlflow-artifacts:/0/models/{ID}/artifacts"
    assert found.ready and found.run_id == "b7ae" and found.tags == {"k": "v"}


async def test_missing_model_is_not_found() -> None:
    body = orjson.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "not found"})
    with pytest.raises(NotFound, match=ID):
        await get_logged_model(client(404, body), ID)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<!doctype html><title>404 Not Found</title>", "text/html; charset=utf-8"),  # MLflow 2's Flask
        (orjson.dumps({"error_code": "ENDPOINT_NOT_FOUND", "message": "No API found"}), "application/json"),
    ],
)
async def test_a_server_without_the_api_says_so(body: bytes, content_type: str) -> None:
    with pytest.raises(LoggedModelsUnsupported, match="MLflow 2"):
        await get_logged_model(client(404, body, content_type), ID)


async def test_other_answers_are_registry_errors() -> None:
    with pytest.raises(RegistryError, match="500"):
        await get_logged_model(client(500, b"{}"), ID)
    with pytest.raises(RegistryError, match="expected fields"):
        await get_logged_model(client(200, b'{"model": {}}'), ID)
