"""Registry access: what an MLflow model registry says about a model version.

Two backends share one protocol: ``RestRegistry`` speaks MLflow's REST API with
an async httpx client (injectable transport, no thread per lookup), and
``LocalRegistry`` wraps ``MlflowClient`` for stores without a server, such as
the embedded ``sqlite:///`` default.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import ssl
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import orjson

from webhook import metrics
from webhook.config import RegistryConfig
from webhook.registry.errors import NotFound as NotFound
from webhook.registry.errors import RegistryError as RegistryError
from webhook.registry.errors import Unavailable as Unavailable
from webhook.registry.logged_models import LoggedModel, LoggedModelsUnsupported, get_logged_model
from webhook.registry.servability import MLmodelReader

log = logging.getLogger("modelpin.registry")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ModelVersion:
    name: str
    version: str
    status: str
    stage: str
    source: str
    run_id: str
    model_id: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


def _failed(registry: str, kind: str, message: str, detail: object) -> Unavailable:
    """Count a failed call, log its detail, and say what users may read."""
    metrics.REGISTRY_ERRORS.labels(registry, kind).inc()
    log.warning("registry %r call failed (%s): %s", registry, kind, detail)
    return Unavailable(message, kind)


def _transport_failure(registry: str, exc: BaseException) -> Unavailable:
    """Whatever the HTTP stack raised, as a failure kind users can act on.

    Only httpx's own errors are told apart; any other type (a connection reset has
    surfaced as an ``AttributeError`` from deep in the stack) is still the
    registry's call failing, not modelpin's code.
    """
    if isinstance(exc, httpx.TimeoutException):
        return _failed(registry, "timeout", f"registry {registry!r} did not answer in time", repr(exc))
    if isinstance(exc, httpx.TransportError):
        return _failed(registry, "connection", f"registry {registry!r} did not answer (connection failed)", repr(exc))
    return _failed(
        registry, "unexpected", f"registry {registry!r} did not answer (the call failed unexpectedly)", repr(exc)
    )


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """What search_registered_models says of a model: enough to tell whether it changed."""

    name: str
    aliases: Mapping[str, str]  # alias -> version
    latest_versions: tuple[ModelVersion, ...]  # the latest version of each stage
    last_updated_ms: int = 0


def _pairs(raw: Any, key: str, value: str) -> dict[str, str]:
    """A name -> value mapping sent either as one, or as a list of ``{key: name, value: v}`` entries."""
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    return {str(entry.get(key)): str(entry.get(value, "")) for entry in raw or ()}


def registered_model_from_json(data: Mapping[str, Any]) -> RegisteredModel:
    return RegisteredModel(
        name=str(data.get("name", "")),
        aliases=_pairs(data.get("aliases"), "alias", "version"),
        latest_versions=tuple(version_from_json(v) for v in data.get("latest_versions") or []),
        last_updated_ms=int(data.get("last_updated_timestamp") or 0),
    )


class Registry(Protocol):
    name: str

    async def get_version(self, model: str, version: str) -> ModelVersion: ...
    async def get_alias(self, model: str, alias: str) -> ModelVersion: ...
    async def search_versions(self, model: str) -> list[ModelVersion]: ...
    async def download_uri(self, model: str, version: str) -> str: ...
    async def run_artifact_uri(self, run_id: str) -> str: ...
    async def logged_model_artifact_uri(self, model_id: str) -> str: ...
    async def logged_model(self, model_id: str) -> LoggedModel: ...
    def flavor_reader(self, *, read_local: bool = ...) -> MLmodelReader: ...
    async def search_registered_models(self, page_size: int = ...) -> list[RegisteredModel]: ...
    async def aclose(self) -> None: ...


def version_from_json(data: Mapping[str, Any]) -> ModelVersion:
    version = str(data["version"])
    if not version.isdigit():
        # versions are compared as numbers; anything else is not an MLflow answer
        raise ValueError(f"version {version[:40]!r} is not a number")
    return ModelVersion(
        name=str(data["name"]),
        version=version,
        status=str(data.get("status", "READY")),
        stage=str(data.get("current_stage", "None") or "None"),
        source=str(data.get("source", "")),
        run_id=str(data.get("run_id", "") or ""),
        model_id=str(data.get("model_id", "") or ""),
        tags=_pairs(data.get("tags"), "key", "value"),
        aliases=tuple(data.get("aliases") or ()),
    )


class _SecretFile:
    """A mounted secret, read again when the file changes (a Secret volume swaps a symlink)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._value: str | None = None

    def read(self) -> str | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return self._value  # mid-swap, or gone: the last value read until a new one appears
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            try:
                self._value = self.path.read_text().strip() or None
            except OSError:
                return self._value
            self._stamp = stamp
        return self._value


class _Credentials(httpx.Auth):
    """Bearer token or basic auth, from the environment or files re-read when they change.

    One stat per request and file: a rotated token is used without a restart.
    """

    def __init__(self, config: RegistryConfig) -> None:
        self._env_token = os.environ.get(config.token_env) if config.token_env else None
        self._token_file = _SecretFile(config.token_file) if config.token_file else None
        self._user = config.username or (os.environ.get(config.username_env) if config.username_env else None)
        self._env_password = os.environ.get(config.password_env) if config.password_env else None
        self._password_file = _SecretFile(config.password_file) if config.password_file else None

    def header(self) -> str | None:
        password = self._env_password or (self._password_file.read() if self._password_file else None)
        if self._user and password:
            # basic auth wins when both are configured, as it always has
            return "Basic " + base64.b64encode(f"{self._user}:{password}".encode()).decode("ascii")
        token = self._env_token or (self._token_file.read() if self._token_file else None)
        return f"Bearer {token}" if token else None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        header = self.header()
        if header is not None:
            request.headers["Authorization"] = header
        yield request


class RestRegistry:
    """MLflow REST API over httpx; one connection pool per registry."""

    def __init__(
        self,
        name: str,
        config: RegistryConfig,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self._client = httpx.AsyncClient(
            base_url=config.tracking_uri.rstrip("/") + "/api/2.0/mlflow",
            headers={"Accept": "application/json"},
            auth=_Credentials(config),
            timeout=config.timeout_seconds,
            verify=_verify(config.verify_tls),
            transport=transport,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )
        # the tracking server's root: its artifact proxy and download routes are not under /api/2.0/mlflow
        self._root = httpx.AsyncClient(
            base_url=config.tracking_uri.rstrip("/"),
            auth=_Credentials(config),
            timeout=config.timeout_seconds,
            verify=_verify(config.verify_tls),
            transport=transport,
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
        )
        self._artifact_roots = dict(config.artifact_roots)

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        op = path.split("/")[1]  # bounded label set: the REST resource, never an id
        try:
            response = await self._client.get(path, params=params)
        except Exception as exc:
            raise _transport_failure(self.name, exc) from exc
        finally:
            metrics.REGISTRY_LATENCY.labels(self.name, op).observe(time.perf_counter() - started)
        if response.status_code == 200:
            try:
                body = orjson.loads(response.content)
            except orjson.JSONDecodeError as exc:
                raise _failed(
                    self.name, "bad_response", f"registry {self.name!r} answered with something that is not JSON", exc
                ) from exc
            if not isinstance(body, dict):
                raise _failed(self.name, "bad_response", f"registry {self.name!r} answered unexpectedly", body)
            return body
        # The body is the registry's text, which may quote its store URI: the log gets it, users the status.
        status = response.status_code
        message = _error_message(response)
        if status == 404 or _means_missing(message):
            metrics.REGISTRY_ERRORS.labels(self.name, "not_found").inc()
            log.debug("registry %r: not found (%d): %s", self.name, status, message)
            raise NotFound(f"registry {self.name!r} has no such {_THINGS.get(op, op)}")
        if status in (401, 403):
            # modelpin's credentials, not the user's object: the registry is unavailable to modelpin
            raise _failed(
                self.name,
                "refused_credentials",
                f"registry {self.name!r} refused modelpin's credentials ({status})",
                message,
            )
        if status >= 500 or status == 429:
            raise _failed(self.name, "server_error", f"registry {self.name!r} answered {status}", message)
        metrics.REGISTRY_ERRORS.labels(self.name, "rejected").inc()
        log.warning("registry %r rejected a call (%d): %s", self.name, status, message)
        raise RegistryError(f"registry {self.name!r} rejected the lookup ({status}; details in modelpin's log)")

    def _read(self, body: dict[str, Any], read: Callable[[dict[str, Any]], R]) -> R:
        """``read(body)``; a 200 without the fields modelpin reads is the registry failing, not modelpin."""
        try:
            return read(body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _failed(
                self.name, "bad_response", f"registry {self.name!r} answered without the expected fields", exc
            ) from exc

    async def get_version(self, model: str, version: str) -> ModelVersion:
        body = await self._get("/model-versions/get", {"name": model, "version": version})
        return self._read(body, lambda b: version_from_json(b["model_version"]))

    async def get_alias(self, model: str, alias: str) -> ModelVersion:
        body = await self._get("/registered-models/alias", {"name": model, "alias": alias})
        return self._read(body, lambda b: version_from_json(b["model_version"]))

    async def search_versions(self, model: str) -> list[ModelVersion]:
        escaped = model.replace("'", "\\'")
        params = {"filter": f"name='{escaped}'", "max_results": "1000"}
        found: list[ModelVersion] = []
        while True:
            body = await self._get("/model-versions/search", params)
            found.extend(self._read(body, lambda b: [version_from_json(v) for v in b.get("model_versions", [])]))
            token = body.get("next_page_token")
            if not token:
                return found
            params = {**params, "page_token": token}

    async def search_registered_models(self, page_size: int = 1000) -> list[RegisteredModel]:
        """Every registered model with its aliases and latest versions: one call per page."""
        params = {"max_results": str(page_size)}
        found: list[RegisteredModel] = []
        while True:
            body = await self._get("/registered-models/search", params)
            found.extend(
                self._read(body, lambda b: [registered_model_from_json(m) for m in b.get("registered_models", [])])
            )
            token = body.get("next_page_token")
            if not token:
                return found
            params = {**params, "page_token": token}

    async def download_uri(self, model: str, version: str) -> str:
        body = await self._get("/model-versions/get-download-uri", {"name": model, "version": version})
        return self._read(body, lambda b: str(b["artifact_uri"]))

    async def run_artifact_uri(self, run_id: str) -> str:
        body = await self._get("/runs/get", {"run_id": run_id})
        return self._read(body, lambda b: str(b["run"]["info"]["artifact_uri"]))

    async def logged_model_artifact_uri(self, model_id: str) -> str:
        return (await self.logged_model(model_id)).artifact_uri

    async def logged_model(self, model_id: str) -> LoggedModel:
        """MLflow 3's logged model; an MLflow 2 server's 404 page is ``LoggedModelsUnsupported``, not a miss."""
        started = time.perf_counter()
        try:
            return await get_logged_model(self._client, model_id, registry=self.name)
        except httpx.HTTPError as exc:
            raise _transport_failure(self.name, exc) from exc
        except Unavailable as exc:
            metrics.REGISTRY_ERRORS.labels(self.name, exc.kind).inc()
            raise
        finally:
            metrics.REGISTRY_LATENCY.labels(self.name, "logged-models").observe(time.perf_counter() - started)

    def flavor_reader(self, *, read_local: bool = False) -> MLmodelReader:
        """Reads MLmodel files through the tracking server's artifact routes, with this registry's auth and TLS."""
        return MLmodelReader(self._root, artifact_roots=self._artifact_roots, read_local=read_local)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._root.aclose()


# what a not-found on each REST resource is missing, in words
_THINGS = {
    "model-versions": "model version",
    "registered-models": "model or alias",
    "runs": "run",
    "logged-models": "logged model",
}


def _means_missing(message: str) -> bool:
    # MLflow answers a missing alias with INVALID_PARAMETER_VALUE "... not found",
    # not RESOURCE_DOES_NOT_EXIST.
    return "RESOURCE_DOES_NOT_EXIST" in message or "not found" in message.lower()


def _verify(setting: bool | str) -> bool | ssl.SSLContext:
    """``verify_tls``: true, false, or the path of a CA bundle to trust."""
    if isinstance(setting, str):
        return ssl.create_default_context(cafile=setting)
    return setting


def _error_message(response: httpx.Response) -> str:
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:300] or response.reason_phrase
    if isinstance(data, dict):
        return f"{data.get('error_code', '')}: {data.get('message', '')}"[:500]
    return str(data)[:500]


T = TypeVar("T")


class LocalRegistry:
    """``MlflowClient`` on a worker thread: for stores that have no REST server."""

    def __init__(self, name: str, tracking_uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self.name = name
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    async def _call(self, op: str, fn: Callable[[], T]) -> T:
        from mlflow.exceptions import MlflowException

        started = time.perf_counter()
        try:
            return await asyncio.to_thread(fn)
        except MlflowException as exc:
            if _means_missing(f"{exc.error_code} {exc.message}"):
                metrics.REGISTRY_ERRORS.labels(self.name, "not_found").inc()
                log.debug("registry %r: not found: %s", self.name, exc.message)
                raise NotFound(f"registry {self.name!r} has no such {_THINGS.get(op, op)}") from exc
            raise _failed(
                self.name, "server_error", f"registry {self.name!r} failed ({exc.error_code})", repr(exc)
            ) from exc
        except Exception as exc:  # the store's driver errors are not ours to enumerate, nor to show
            raise _failed(
                self.name, "unexpected", f"registry {self.name!r} failed (its store did not answer)", repr(exc)
            ) from exc
        finally:
            metrics.REGISTRY_LATENCY.labels(self.name, op).observe(time.perf_counter() - started)

    @staticmethod
    def _convert(mv: Any) -> ModelVersion:
        return ModelVersion(
            name=mv.name,
            version=str(mv.version),
            status=str(mv.status),
            stage=str(mv.current_stage or "None"),
            source=str(mv.source or ""),
            run_id=str(mv.run_id or ""),
            model_id=str(getattr(mv, "model_id", "") or ""),
            tags=dict(mv.tags or {}),
            aliases=tuple(getattr(mv, "aliases", ()) or ()),
        )

    async def get_version(self, model: str, version: str) -> ModelVersion:
        return self._convert(await self._call("model-versions", lambda: self._client.get_model_version(model, version)))

    async def get_alias(self, model: str, alias: str) -> ModelVersion:
        return self._convert(
            await self._call("registered-models", lambda: self._client.get_model_version_by_alias(model, alias))
        )

    async def search_versions(self, model: str) -> list[ModelVersion]:
        escaped = model.replace("'", "\\'")
        found = await self._call(
            "model-versions", lambda: list(self._client.search_model_versions(f"name='{escaped}'"))
        )
        return [self._convert(mv) for mv in found]

    async def search_registered_models(self, page_size: int = 1000) -> list[RegisteredModel]:
        def every_page() -> list[RegisteredModel]:
            found: list[RegisteredModel] = []
            token: str | None = None
            while True:
                page = self._client.search_registered_models(max_results=page_size, page_token=token)
                for rm in page:
                    found.append(
                        RegisteredModel(
                            name=rm.name,
                            aliases={str(k): str(v) for k, v in (getattr(rm, "aliases", None) or {}).items()},
                            latest_versions=tuple(self._convert(mv) for mv in rm.latest_versions or []),
                            last_updated_ms=int(rm.last_updated_timestamp or 0),
                        )
                    )
                token = page.token
                if not token:
                    return found

        return await self._call("registered-models", every_page)

    async def download_uri(self, model: str, version: str) -> str:
        return str(
            await self._call(
                "model-versions",
                lambda: self._client.get_model_version_download_uri(model, version),
            )
        )

    async def run_artifact_uri(self, run_id: str) -> str:
        run = await self._call("runs", lambda: self._client.get_run(run_id))
        return str(run.info.artifact_uri)

    async def logged_model_artifact_uri(self, model_id: str) -> str:
        return (await self.logged_model(model_id)).artifact_uri

    async def logged_model(self, model_id: str) -> LoggedModel:
        if not hasattr(self._client, "get_logged_model"):
            raise LoggedModelsUnsupported(
                f"registry {self.name!r} has no logged-model API (MLflow 2): models:/{model_id} needs MLflow 3"
            )
        logged = await self._call("logged-models", lambda: self._client.get_logged_model(model_id))
        status = getattr(logged.status, "name", None) or str(logged.status)
        return LoggedModel(
            model_id=str(logged.model_id),
            name=str(logged.name or ""),
            artifact_uri=str(logged.artifact_location),
            status=status if status.startswith("LOGGED_MODEL_") else f"LOGGED_MODEL_{status}",
            run_id=str(logged.source_run_id or ""),
            experiment_id=str(logged.experiment_id or ""),
            tags={str(k): str(v) for k, v in (logged.tags or {}).items()},
        )

    def flavor_reader(self, *, read_local: bool = False) -> MLmodelReader:
        """No tracking server to read through: local folders only, and only when allowed."""
        return MLmodelReader(None, read_local=read_local)

    async def aclose(self) -> None:
        return None


def open_registry(name: str, config: RegistryConfig, transport: httpx.AsyncBaseTransport | None = None) -> Registry:
    if config.tracking_uri.startswith(("http://", "https://")):
        return RestRegistry(name, config, transport)
    return LocalRegistry(name, config.tracking_uri)
