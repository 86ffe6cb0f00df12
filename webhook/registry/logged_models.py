"""MLflow 3 logged models by id (``models:/m-<id>``), over the REST API.

``GET /api/2.0/mlflow/logged-models/<model_id>`` (MLflow 3's GetLoggedModel)
answers ``{"model": {"info": {model_id, name, artifact_uri, status,
source_run_id, tags, ...}}}``. An MLflow 2 server has no such route and
answers 404 with an HTML page (Flask's default), or, behind some gateways,
JSON ``ENDPOINT_NOT_FOUND``; a missing model is 404 JSON
``RESOURCE_DOES_NOT_EXIST``. The two must not be confused: "no such model" on
a server that cannot know is a wrong answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from webhook.registry.errors import NotFound, RegistryError, Unavailable

READY = "LOGGED_MODEL_READY"


class LoggedModelsUnsupported(RegistryError):
    """The server has no logged-model API: an MLflow 2 server (``m-<id>`` references need MLflow 3)."""


@dataclass(frozen=True, slots=True)
class LoggedModel:
    model_id: str
    name: str
    artifact_uri: str
    status: str
    run_id: str
    experiment_id: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.status == READY


def logged_model_from_json(data: Mapping[str, Any]) -> LoggedModel:
    info = data["model"]["info"]
    tags = {str(t["key"]): str(t.get("value", "")) for t in info.get("tags") or ()}
    return LoggedModel(
        model_id=str(info["model_id"]),
        name=str(info.get("name", "")),
        artifact_uri=str(info["artifact_uri"]),
        status=str(info.get("status", "")),
        run_id=str(info.get("source_run_id", "") or ""),
        experiment_id=str(info.get("experiment_id", "")),
        tags=tags,
    )


async def get_logged_model(client: httpx.AsyncClient, model_id: str, *, registry: str = "mlflow") -> LoggedModel:
    """The logged model ``model_id``; ``client``'s base URL is the tracking server's ``/api/2.0/mlflow``.

    Raises ``NotFound`` for a model the server does not have, ``LoggedModelsUnsupported``
    when the server has no logged-model API, ``RegistryError`` for any other answer.
    Transport failures propagate as httpx errors, for the caller's own mapping.
    """
    response = await client.get(f"/logged-models/{quote(model_id, safe='')}")
    body = _json(response)
    if response.status_code == 200 and body is not None:
        try:
            return logged_model_from_json(body)
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"registry {registry!r} answered a logged model without the expected fields") from exc
    code = str(body.get("error_code", "")) if body is not None else ""
    if response.status_code == 404 and code == "RESOURCE_DOES_NOT_EXIST":
        raise NotFound(f"registry {registry!r} has no logged model {model_id!r}")
    if response.status_code == 404:
        raise LoggedModelsUnsupported(
            f"registry {registry!r} has no logged-model API (MLflow 2): models:/{model_id} needs MLflow 3; "
            "upgrade the server, or register the model and use name@alias or name/<version>"
        )
    if response.status_code in (401, 403):
        raise Unavailable(
            f"registry {registry!r} refused modelpin's credentials ({response.status_code})", "refused_credentials"
        )
    if response.status_code >= 500 or response.status_code == 429:
        # the registry failing, not the reference: caches and the circuit apply
        raise Unavailable(f"registry {registry!r} answered {response.status_code}", "server_error")
    detail = f"{code}: {body.get('message', '')}" if body is not None else response.reason_phrase
    raise RegistryError(
        f"registry {registry!r} answered {response.status_code} for logged model {model_id!r}: {detail}"
    )


def _json(response: httpx.Response) -> dict[str, Any] | None:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None
