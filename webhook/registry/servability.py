"""Can the server an object runs load the model version it names? Read from the version's ``MLmodel``.

The ``flavors`` keys of a model folder's ``MLmodel`` file say how the model
loads; ``webhook.templating.flavors`` says which flavor a server needs. The
file is read only where modelpin needs no storage credentials of its own:

1. ``mlflow-artifacts:`` locations, through the tracking server's artifact
   proxy (``GET /api/2.0/mlflow-artifacts/artifacts/<path>/MLmodel``);
2. locations the registry's ``artifact_roots`` mapped from ``mlflow-artifacts:``
   (``s3://mlflow/...`` back to ``mlflow-artifacts:/...``), the same way;
3. a registered version or a logged model anywhere else, through the tracking
   server's own download routes (``/model-versions/get-artifact``,
   ``/ajax-api/2.0/mlflow/logged-models/<id>/artifacts/files``), which read the
   store with the server's credentials;
4. local paths and ``file:`` stores, only when reading local files is enabled
   (``modelpin render`` on the machine that holds them).

A location none of these can read is *not checked*: a result, never a
failure. Versions and logged models are immutable, so what was read is cached
per version, and a cached version is judged without any request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import yaml

from webhook.templating.flavors import Need

# MLmodel files are small (flavors, signature, metadata); a bigger answer is not read on.
MAX_MLMODEL_BYTES = 256 * 1024
# A read that failed (server down, timeout) is retried after this long, not on every review.
RETRY_AFTER_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Flavors:
    """What the MLmodel file holds."""

    names: frozenset[str]
    where: str


@dataclass(frozen=True, slots=True)
class Missing:
    """The model folder was read and holds no MLmodel file: not an MLflow model."""

    where: str


@dataclass(frozen=True, slots=True)
class NotChecked:
    reason: str
    retry: bool = False  # a passing failure (server down, timeout), worth reading again later


Read = Flavors | Missing | NotChecked


@dataclass(frozen=True, slots=True)
class Servable:
    flavors: frozenset[str]
    need: Need | None


@dataclass(frozen=True, slots=True)
class NoMLmodel:
    where: str

    def message(self, model: str) -> str:
        return f"{model} has no MLmodel file at {self.where}: it is not an MLflow model a server can load by flavor"


@dataclass(frozen=True, slots=True)
class Mismatch:
    need: Need
    found: frozenset[str]

    def message(self, model: str) -> str:
        found = ", ".join(sorted(self.found)) or "none"
        return (
            f"{model} cannot run on {self.need.server} ({self.need.where}): that server loads the "
            f"{self.need.flavor!r} flavor and the model's MLmodel has {found}"
        )


Servability = Servable | NoMLmodel | Mismatch | NotChecked


def judge(read: Read, need: Need | None) -> Servability:
    """Pure: what was read, held against what the server needs."""
    if isinstance(read, NotChecked):
        return read
    if isinstance(read, Missing):
        return NoMLmodel(read.where)
    if need is None or need.flavor in read.names:
        return Servable(read.names, need)
    return Mismatch(need, read.names)


def parse_mlmodel(text: bytes, where: str) -> Read:
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError:
        return NotChecked(f"the MLmodel file at {where} is not valid YAML")
    flavors = data.get("flavors") if isinstance(data, dict) else None
    if not isinstance(flavors, dict):
        return NotChecked(f"the MLmodel file at {where} has no flavors")
    return Flavors(frozenset(str(k) for k in flavors), where)


_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def reverse_artifact_root(location: str, roots: Mapping[str, str]) -> str | None:
    """The ``mlflow-artifacts:`` location a mapped one came from, if the mapping says so."""
    for prefix, target in sorted(roots.items(), key=lambda kv: len(kv[1]), reverse=True):
        if prefix.startswith("mlflow-artifacts:") and target and location.startswith(target):
            return prefix + location[len(target) :]
    return None


class MLmodelReader:
    """Reads a version's MLmodel through the tracking server, or from local files when allowed."""

    def __init__(
        self,
        client: httpx.AsyncClient | None,
        *,
        artifact_roots: Mapping[str, str] | None = None,
        read_local: bool = False,
        max_bytes: int = MAX_MLMODEL_BYTES,
    ) -> None:
        """``client``'s base URL is the tracking server's root (``http://mlflow:5000``), with its auth.

        Without a client (a store with no tracking server) only local folders can be read.
        """
        self.client = client
        self.artifact_roots = dict(artifact_roots or {})
        self.read_local = read_local
        self.max_bytes = max_bytes

    async def read(
        self, location: str, *, model: str | None = None, version: str | None = None, logged_model: str | None = None
    ) -> Read:
        """``location`` as the registry gives it (before or after ``artifact_roots``)."""
        proxied = location if location.startswith("mlflow-artifacts:") else None
        proxied = proxied or reverse_artifact_root(location, self.artifact_roots)
        if proxied is not None:
            path = unquote(urlsplit(proxied).path).strip("/")
            return await self._get(f"/api/2.0/mlflow-artifacts/artifacts/{quote(path)}/MLmodel", {}, location)
        local = _local_path(location)
        if local is not None:
            if not self.read_local:
                return NotChecked(f"{location} is a local path, read only by modelpin render")
            return self._read_file(local / "MLmodel")
        if model is not None and version is not None:
            params = {"name": model, "version": version, "path": "MLmodel"}
            return await self._get("/model-versions/get-artifact", params, location)
        if logged_model is not None:
            route = f"/ajax-api/2.0/mlflow/logged-models/{quote(logged_model, safe='')}/artifacts/files"
            return await self._get(route, {"artifact_file_path": "MLmodel"}, location)
        scheme = urlsplit(location).scheme or "this"
        return NotChecked(f"modelpin cannot read {scheme} locations without the registry's help ({location})")

    async def _get(self, path: str, params: Mapping[str, str], location: str) -> Read:
        where = f"{location.rstrip('/')}/MLmodel"
        if self.client is None:
            return NotChecked(f"no tracking server to read {where} through")
        try:
            async with self.client.stream("GET", path, params=params) as response:
                if response.status_code == 404:
                    body = await _bounded(response, 4096)
                    # a 404 page from something else (a proxy, an old server) is not "no such file"
                    if body is not None and b"RESOURCE_DOES_NOT_EXIST" in body:
                        return Missing(where)
                    return NotChecked(f"the registry has no route to read {where} (404)")
                if response.status_code != 200:
                    retry = response.status_code >= 500 or response.status_code == 429
                    return NotChecked(f"the registry answered {response.status_code} reading {where}", retry=retry)
                body = await _bounded(response, self.max_bytes)
        except httpx.HTTPError as exc:
            return NotChecked(f"reading {where} failed: {type(exc).__name__}", retry=True)
        if body is None:
            return NotChecked(f"{where} is larger than {self.max_bytes} bytes")
        return parse_mlmodel(body, where)

    def _read_file(self, path: Path) -> Read:
        try:
            with path.open("rb") as handle:
                body = handle.read(self.max_bytes + 1)
        except FileNotFoundError:
            return Missing(str(path)) if path.parent.is_dir() else NotChecked(f"{path.parent} does not exist here")
        except OSError as exc:
            return NotChecked(f"cannot read {path}: {exc.strerror or exc}")
        if len(body) > self.max_bytes:
            return NotChecked(f"{path} is larger than {self.max_bytes} bytes")
        return parse_mlmodel(body, str(path))


async def _bounded(response: httpx.Response, limit: int) -> bytes | None:
    """The body, or None past ``limit`` bytes (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _local_path(location: str) -> Path | None:
    if location.startswith("file:"):
        return Path(unquote(urlsplit(location).path))
    if location.startswith("/"):
        return Path(location)
    return None


class FlavorCache:
    """What each version's MLmodel held, bounded in entries. A passing failure expires; the rest never does."""

    def __init__(self, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[Read, float | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Read | None:
        found = self._entries.get(key)
        if found is None:
            return None
        read, expires = found
        if expires is not None and self.clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return read

    def put(self, key: Hashable, read: Read) -> None:
        retry = isinstance(read, NotChecked) and read.retry
        self._entries[key] = (read, self.clock() + RETRY_AFTER_SECONDS if retry else None)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


async def check(
    reader: MLmodelReader,
    cache: FlavorCache,
    key: Hashable,
    location: str,
    need: Need | None,
    *,
    model: str | None = None,
    version: str | None = None,
    logged_model: str | None = None,
) -> Servability:
    """Servability of one version for one server; ``key`` names the version, e.g. ``(registry, name, version)``.

    A cached version costs no request at all.
    """
    read = cache.get(key)
    if read is None:
        read = await reader.read(location, model=model, version=version, logged_model=logged_model)
        cache.put(key, read)
    return judge(read, need)
