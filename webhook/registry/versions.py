"""Which registered version a reference names, and where its artifacts are."""

from __future__ import annotations

from webhook.registry.clients import ModelVersion, NotFound, Registry
from webhook.templating.grammar import Reference, SelectorKind


async def select_version(registry: Registry, ref: Reference) -> ModelVersion:
    """Only READY versions count (DESIGN.md section 3.1)."""
    sel = ref.selector
    if sel.kind is SelectorKind.LOGGED_MODEL:
        return await logged_model_version(registry, ref.name)
    if sel.kind is SelectorKind.ALIAS:
        try:
            found = await registry.get_alias(ref.name, sel.value)
        except NotFound as exc:
            raise NotFound(f"model {ref.name!r} has no alias {sel.value!r}") from exc
    elif sel.kind is SelectorKind.VERSION:
        try:
            found = await registry.get_version(ref.name, sel.value)
        except NotFound as exc:
            raise NotFound(f"model {ref.name!r} has no version {sel.value}") from exc
    else:
        versions = [v for v in await registry.search_versions(ref.name) if v.status == "READY"]
        if sel.kind is SelectorKind.STAGE:
            versions = [v for v in versions if v.stage.lower() == sel.value.lower()]
        if not versions:
            where = f"in stage {sel.value}" if sel.kind is SelectorKind.STAGE else "at all"
            raise NotFound(f"model {ref.name!r} has no READY version {where}")
        return max(versions, key=lambda v: int(v.version))
    if found.status != "READY":
        raise NotFound(f"version {found.version} of {ref.name!r} ({sel}) is {found.status}, not READY")
    return found


async def logged_model_version(registry: Registry, model_id: str) -> ModelVersion:
    """An MLflow 3 logged model, standing as its own (immutable) version: id for name and version."""
    try:
        logged = await registry.logged_model(model_id)
    except NotFound as exc:
        raise NotFound(f"registry {registry.name!r} has no logged model {model_id!r}") from exc
    if not logged.ready:
        status = logged.status.removeprefix("LOGGED_MODEL_") or "without a status"
        raise NotFound(f"logged model {model_id!r} is {status}, not READY")
    return ModelVersion(
        name=model_id,
        version=model_id,
        status="READY",
        stage="None",
        source=logged.artifact_uri,
        run_id=logged.run_id,
        model_id=model_id,
        tags=logged.tags,
    )


async def artifact_location(registry: Registry, version: ModelVersion) -> str:
    """MLflow's download URI with ``runs:/`` and ``models:/m-`` expanded."""
    uri = version.source
    if uri.startswith("models:/"):
        # The server resolves logged-model sources to their storage location.
        uri = await registry.download_uri(version.name, version.version)
    if uri.startswith("runs:/"):
        run_id, _, path = uri[len("runs:/") :].partition("/")
        root = await registry.run_artifact_uri(run_id)
        return f"{root.rstrip('/')}/{path}" if path else root
    if uri.startswith("models:/m-"):
        model_id, _, path = uri[len("models:/") :].partition("/")
        root = await registry.logged_model_artifact_uri(model_id)
        return f"{root.rstrip('/')}/{path}" if path else root
    return uri
