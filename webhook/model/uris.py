"""From an artifact location to the URI the serving side fetches (DESIGN.md section 3).

Profiles are pure functions of the version's fields and the kind being
admitted; all registry I/O happens before this module is reached.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit


class Flavor(StrEnum):
    """Which storage initializer will fetch the URI."""

    KSERVE = "kserve"
    SELDON = "seldon"
    GENERIC = "generic"

    @classmethod
    def for_group(cls, group: str) -> Flavor:
        # Looked up on every review; enum member access is slow enough to show.
        found = _FLAVORS.get(group)
        if found is None:
            found = _flavor_of(group)
            if len(_FLAVORS) < 256:
                _FLAVORS[group] = found
        return found


def _flavor_of(group: str) -> Flavor:
    if group.endswith("kserve.io"):
        return Flavor.KSERVE
    if group.endswith("seldon.io"):
        return Flavor.SELDON
    return Flavor.GENERIC


_FLAVORS: dict[str, Flavor] = {}


class ProfileError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class VersionFields:
    name: str
    version: str
    run_id: str
    location: str  # already fetchable (artifact roots applied)
    tags: Mapping[str, str] = field(default_factory=dict)


# Schemes a KServe or Seldon storage initializer can fetch as they are.
PASSTHROUGH = (
    "s3://",
    "gs://",
    "https://",
    "http://",
    "oci://",
    "pvc://",
    "hdfs://",
    "webhdfs://",
    "hf://",
)
NOT_FETCHABLE_HINT = (
    "it cannot be fetched by a serving pod; map it to object storage with the registry's artifact_roots setting"
)

_WASB = re.compile(
    r"^(?:wasbs?|abfss?)://(?P<container>[^@/]+)@(?P<account>[^./]+)\.(?:blob|dfs)\.core\.windows\.net/?(?P<path>.*)$"
)
_AZ_HTTPS = re.compile(r"^https://(?P<account>[^./]+)\.blob\.core\.windows\.net/(?P<container>[^/]+)/?(?P<path>.*)$")
_WASB_SHORT = re.compile(r"^wasbs?://(?P<container>[^@/]+)/?(?P<path>.*)$")


@dataclass(frozen=True, slots=True)
class AzureLocation:
    account: str | None
    container: str
    path: str


def parse_azure(location: str) -> AzureLocation | None:
    for pattern in (_WASB, _AZ_HTTPS):
        match = pattern.match(location)
        if match:
            return AzureLocation(match["account"], match["container"], match["path"])
    match = _WASB_SHORT.match(location)
    if match:
        return AzureLocation(None, match["container"], match["path"])
    return None


def map_artifact_root(location: str, roots: Mapping[str, str]) -> str:
    """Rewrite the longest matching configured prefix."""
    for prefix in sorted(roots, key=len, reverse=True):
        if location.startswith(prefix):
            return roots[prefix] + location[len(prefix) :]
    return location


def is_fetchable(location: str) -> bool:
    return location.startswith(PASSTHROUGH) or parse_azure(location) is not None


def render(profile: str, fields: VersionFields, flavor: Flavor, patterns: Mapping[str, str]) -> str:
    if profile in patterns:
        return _render_pattern(profile, patterns[profile], fields)
    location = fields.location
    if profile == "s3":
        return _require(location, "s3", ("s3://",), "s3a://")
    if profile == "gcs":
        return _require(location, "gcs", ("gs://",), "gcs://")
    if profile == "blob":
        return _blob(location, flavor)
    if profile == "auto":
        # Azure in the kind's own form: Seldon's rclone initializer wants wasbs://, KServe https://.
        is_https = location.startswith(("http://", "https://"))
        if parse_azure(location) is not None and (flavor is Flavor.SELDON or not is_https):
            return _blob(location, flavor)
        if location.startswith(PASSTHROUGH):
            return location
        raise ProfileError(f"artifact location {location!r} has no form a serving pod accepts: {NOT_FETCHABLE_HINT}")
    raise ProfileError(f"unknown profile {profile!r}")


def _require(location: str, profile: str, schemes: tuple[str, ...], alias: str) -> str:
    if location.startswith(alias):
        location = schemes[0] + location[len(alias) :]
    if location.startswith(schemes):
        return location
    scheme = urlsplit(location).scheme or "a local path"
    raise ProfileError(
        f"profile {profile!r} needs a {schemes[0]} location but the version's artifact location "
        f"is {location!r} ({scheme}); use the matching profile, 'auto', or map it with artifact_roots"
    )


def _blob(location: str, flavor: Flavor) -> str:
    azure = parse_azure(location)
    if azure is None:
        raise ProfileError(
            f"profile 'blob' needs an Azure Blob location (wasbs://container@account.blob.core.windows.net/... "
            f"or https://account.blob.core.windows.net/...) but the version's artifact location is {location!r}"
        )
    path = azure.path.strip("/")
    if flavor is Flavor.SELDON:
        # Seldon's rclone initializer names the container, the account comes
        # from the secret referenced by envSecretRefName.
        return f"wasbs://{azure.container}/{path}"
    if azure.account is None:
        raise ProfileError(
            f"artifact location {location!r} names no storage account, which KServe's "
            "https://<account>.blob.core.windows.net/... form needs"
        )
    return f"https://{azure.account}.blob.core.windows.net/{azure.container}/{path}"


class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        raise ProfileError(f"unknown field {{{key}}}; known: name, version, run_id, location, tags[...]")


class _Tags(dict[str, str]):
    def __init__(self, tags: Mapping[str, str], model: str, version: str, profile: str) -> None:
        super().__init__(tags)
        self.where = (model, version, profile)

    def __missing__(self, key: str) -> str:
        model, version, profile = self.where
        raise ProfileError(f"version {version} of {model!r} has no tag {key!r}, which profile {profile!r} needs")


def _render_pattern(profile: str, pattern: str, fields: VersionFields) -> str:
    values = _Fields(
        name=fields.name,
        version=fields.version,
        run_id=fields.run_id,
        location=fields.location,
        tags=_Tags(fields.tags, fields.name, fields.version, profile),
    )
    try:
        return string.Formatter().vformat(pattern, (), values)
    except ProfileError:
        raise
    except (ValueError, IndexError, KeyError, AttributeError) as exc:
        raise ProfileError(f"profile {profile!r} pattern {pattern!r} cannot be applied: {exc}") from exc
