"""From an artifact location to the URI the serving side fetches (DESIGN.md section 3).

Profiles are pure functions of the version's fields and the kind being
admitted; all registry I/O happens before this module is reached. Each kind's
fetcher accepts its own forms:

- KServe's storage initializer (InferenceService; ``Storage.download`` of
  kserve-storage 0.21): s3, gs, hdfs, webhdfs, hf, modelscope, oci, pvc
  (mounted by KServe's webhook), Azure Blob only as
  ``https://<account>.blob.core.windows.net/...`` (or a DNS-zone endpoint
  ``https://<account>.z<NN>.blob.storage.azure.net/...``), Azure Files as
  ``https://<account>.file.core.windows.net/<share>/...``, a git repository as
  ``https://....git``, and any other http(s) URL as one file or archive.
- KServe's model agent (TrainedModel): s3, gs, http, https; an http(s) URL is
  one GET of one file, so an Azure Blob folder cannot work.
- rclone (Seldon v1's storage initializer, Seldon v2's agent):
  ``<remote>:<bucket>/<path>`` where the remote is whatever the user's rclone
  secret defines, plus ``pvc://`` which Seldon v1 mounts itself.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import pydantic
from pydantic import ConfigDict, field_validator, model_validator
from pydantic_core import ArgsKwargs

from webhook.templating.template_paths import KINDS
from webhook.templating.template_paths import Flavor as Flavor  # where kinds are declared; imported from here too


class ProfileError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class VersionFields:
    name: str
    version: str
    run_id: str
    location: str  # already fetchable (artifact roots applied)
    tags: Mapping[str, str] = field(default_factory=dict)


# Schemes some storage initializer fetches as they are; which kind takes which is ACCEPTS.
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
    "modelscope://",
)
# Spellings of one store that the fetchers know under one scheme only.
ALIASES = {"s3a://": "s3://", "gcs://": "gs://"}
NOT_FETCHABLE_HINT = (
    "it cannot be fetched by a serving pod; map it to object storage with the registry's artifact_roots setting"
)

# What each kind's fetcher takes, as written in denials. GENERIC is never denied a PASSTHROUGH scheme.
ACCEPTS: Mapping[Flavor, str] = {
    Flavor.KSERVE: (
        "s3://, gs://, https://<account>.blob.core.windows.net/ (Azure Blob and ADLS Gen2), hdfs://, webhdfs://, "
        "hf://, modelscope://, oci://, pvc://, Azure Files (https://<account>.file.core.windows.net/), git "
        "repositories (https://....git), other http(s):// URLs (one file or archive)"
    ),
    Flavor.KSERVE_AGENT: "s3://, gs://, http(s):// (one file)",
    Flavor.SELDON: (
        "S3 (s3://, s3a://), GCS (gs://) and Azure Blob or ADLS Gen2 locations, written for their rclone remotes, "
        "and pvc://"
    ),
    Flavor.GENERIC: ", ".join(PASSTHROUGH) + ", Azure Blob",
}
# Who ships each fetcher and what it is, for denials; the kinds it serves come from the catalogue.
_FETCHERS: Mapping[Flavor, tuple[str, str]] = {
    Flavor.KSERVE: ("KServe", "storage initializer"),
    Flavor.KSERVE_AGENT: ("KServe", "model agent"),
    Flavor.SELDON: ("Seldon", "rclone"),
}
KIND_NAMES: Mapping[Flavor, str] = {
    **{
        flavor: f"{vendor} {'/'.join(k.kind for k in KINDS if k.fetcher is flavor)} ({program})"
        for flavor, (vendor, program) in _FETCHERS.items()
    },
    Flavor.GENERIC: "this kind",
}
_TAKES: Mapping[Flavor, tuple[str, ...]] = {
    Flavor.KSERVE: PASSTHROUGH,
    Flavor.KSERVE_AGENT: ("s3://", "gs://", "https://", "http://"),
    Flavor.SELDON: ("s3://", "gs://", "pvc://"),
    Flavor.GENERIC: PASSTHROUGH,
}

_WASB = re.compile(
    r"^(?:wasbs?|abfss?)://(?P<container>[^@/]+)@(?P<account>[^./]+)\.(?:blob|dfs)\.core\.windows\.net/?(?P<path>.*)$"
)
_AZ_HTTPS = re.compile(
    r"^https://(?P<account>[^./]+)\.(?P<endpoint>blob|dfs)\.core\.windows\.net/(?P<container>[^/]+)/?(?P<path>.*)$"
)
_WASB_SHORT = re.compile(r"^wasbs?://(?P<container>[^@/]+)/?(?P<path>.*)$")


@dataclass(frozen=True, slots=True)
class AzureLocation:
    account: str | None
    container: str
    path: str


def _is_blob_endpoint(location: str) -> bool:
    match = _AZ_HTTPS.match(location)
    return match is not None and match["endpoint"] == "blob"


def parse_azure(location: str) -> AzureLocation | None:
    for pattern in (_WASB, _AZ_HTTPS):
        match = pattern.match(location)
        if match:
            return AzureLocation(match["account"], match["container"], match["path"])
    match = _WASB_SHORT.match(location)
    if match:
        return AzureLocation(None, match["container"], match["path"])
    return None


_REMOTE_NAME = re.compile(r"^[\w.+@-]([\w.+@ -]*[\w.+@-])?$")


def check_remote_name(name: str) -> str:
    """rclone's rule for remote names: letters, digits, ``_ - . + @`` and inner spaces, no leading ``-``."""
    if not _REMOTE_NAME.match(name) or name.startswith("-"):
        raise ValueError(
            f"{name!r} is not an rclone remote name (letters, digits, '_', '-', '.', '+', '@' and inner spaces; "
            "not starting with '-')"
        )
    return name


# A misspelt key would otherwise be ignored, and URIs written for remotes no secret defines.
@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class RcloneRemotes:
    """Seldon kinds: the rclone remote each URI names, as the user's rclone secret defines it.

    Also the ``rclone:`` block of the configuration. The defaults write the seed's forms
    (``s3://``, ``gs://``, ``wasbs://<container>/<path>``).
    """

    # rclone reads both <remote>:<bucket>/<path> and <remote>://<bucket>/<path>;
    # the latter is the default because it is what existing manifests hold.
    form: Literal["remote://", "remote:"] = "remote://"
    s3: str = "s3"
    gs: str = "gs"
    azure: str = "wasbs"
    # Per bucket (S3, GCS) or storage account (Azure): a remote of its own, e.g. a MinIO beside AWS.
    s3_buckets: Mapping[str, str] = field(default_factory=dict)
    gs_buckets: Mapping[str, str] = field(default_factory=dict)
    azure_accounts: Mapping[str, str] = field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _colon_argument(cls, data: Any) -> Any:
        # Code may say ``colon=True`` for form "remote:"; only a call has it, never the configuration.
        if isinstance(data, ArgsKwargs) and data.kwargs and "colon" in data.kwargs:
            kwargs = dict(data.kwargs)
            kwargs["form"] = "remote:" if kwargs.pop("colon") else "remote://"
            return ArgsKwargs(data.args, kwargs)
        return data

    @field_validator("s3", "gs", "azure")
    @classmethod
    def _check_remote(cls, value: str) -> str:
        return check_remote_name(value)

    @field_validator("s3_buckets", "gs_buckets", "azure_accounts")
    @classmethod
    def _check_remotes(cls, value: Mapping[str, str]) -> Mapping[str, str]:
        for remote in value.values():
            check_remote_name(remote)
        return value

    @property
    def colon(self) -> bool:
        return self.form == "remote:"

    def remotes(self) -> RcloneRemotes:
        """This object: the resolver reads the configuration's rclone block through it."""
        return self

    def write(self, remote: str, bucket_and_path: str) -> str:
        return f"{remote}:{bucket_and_path}" if self.colon else f"{remote}://{bucket_and_path}"


SEED_REMOTES = RcloneRemotes()


def map_artifact_root(location: str, roots: Mapping[str, str]) -> str:
    """Rewrite the longest matching configured prefix."""
    for prefix in sorted(roots, key=len, reverse=True):
        if location.startswith(prefix):
            return roots[prefix] + location[len(prefix) :]
    return location


def _canonical(location: str) -> str:
    for alias, scheme in ALIASES.items():
        if location.startswith(alias):
            return scheme + location[len(alias) :]
    return location


def render(
    profile: str,
    fields: VersionFields,
    flavor: Flavor,
    patterns: Mapping[str, str],
    remotes: RcloneRemotes = SEED_REMOTES,
) -> str:
    # A pattern's output is the configurer's to choose (e.g. a scheme served by a
    # KServe ClusterStorageContainer), so it is not checked against the kind.
    if profile in patterns:
        return _render_pattern(profile, patterns[profile], fields)
    builtin = BUILTIN_PROFILES.get(profile)
    if builtin is None:
        raise ProfileError(f"unknown profile {profile!r}")
    return builtin(fields.location, flavor, remotes)


def _s3(location: str, flavor: Flavor, remotes: RcloneRemotes) -> str:
    return _bucket(_require(location, "s3", "s3://"), location, flavor, remotes)


def _gcs(location: str, flavor: Flavor, remotes: RcloneRemotes) -> str:
    return _bucket(_require(location, "gcs", "gs://"), location, flavor, remotes)


def _blob(location: str, flavor: Flavor, remotes: RcloneRemotes) -> str:
    azure = parse_azure(location)
    if azure is None:
        raise ProfileError(
            f"profile 'blob' needs an Azure Blob location (wasbs://container@account.blob.core.windows.net/... "
            f"or https://account.blob.core.windows.net/...) but the version's artifact location is {location!r}"
        )
    return _azure(azure, location, flavor, remotes)


def _auto(location: str, flavor: Flavor, remotes: RcloneRemotes) -> str:
    azure = parse_azure(location)
    if azure is not None:
        if flavor in (Flavor.KSERVE, Flavor.GENERIC) and _is_blob_endpoint(location):
            # Already KServe's form: written as it is, so earlier resolutions stay byte-identical.
            return location
        return _azure(azure, location, flavor, remotes)
    canonical = _canonical(location)
    if canonical.startswith(("s3://", "gs://")):
        return _bucket(canonical, location, flavor, remotes)
    if canonical.startswith(PASSTHROUGH):
        if not canonical.startswith(_TAKES[flavor]):
            raise _cannot_fetch(flavor, location, f"{urlsplit(canonical).scheme}://")
        return canonical
    raise ProfileError(f"artifact location {location!r} has no form a serving pod accepts: {NOT_FETCHABLE_HINT}")


# The built-in profiles; configuration refuses a pattern profile of one of these names.
BUILTIN_PROFILES: Mapping[str, Callable[[str, Flavor, RcloneRemotes], str]] = {
    "auto": _auto,
    "s3": _s3,
    "gcs": _gcs,
    "blob": _blob,
}


def _require(location: str, profile: str, scheme: str) -> str:
    canonical = _canonical(location)
    if canonical.startswith(scheme):
        return canonical
    found = urlsplit(location).scheme or "a local path"
    raise ProfileError(
        f"profile {profile!r} needs a {scheme} location but the version's artifact location "
        f"is {location!r} ({found}); use the matching profile, 'auto', or map it with artifact_roots"
    )


def _bucket(uri: str, location: str, flavor: Flavor, remotes: RcloneRemotes) -> str:
    """An ``s3://`` or ``gs://`` URI, written for the kind."""
    if flavor is not Flavor.SELDON:
        return uri
    scheme, _, rest = uri.partition("://")
    bucket = rest.partition("/")[0]
    if scheme == "s3":
        remote = remotes.s3_buckets.get(bucket, remotes.s3)
    else:
        remote = remotes.gs_buckets.get(bucket, remotes.gs)
    return remotes.write(remote, rest)


def _azure(azure: AzureLocation, location: str, flavor: Flavor, remotes: RcloneRemotes) -> str:
    path = azure.path.strip("/")
    if flavor is Flavor.SELDON:
        # The container is rclone's bucket; the account is the remote's, so a
        # remote configured for the account is chosen over the default one.
        remote = remotes.azure_accounts.get(azure.account or "", remotes.azure)
        return remotes.write(remote, f"{azure.container}/{path}")
    if flavor is Flavor.KSERVE_AGENT:
        raise _cannot_fetch(
            flavor,
            location,
            "an Azure Blob folder: the model agent fetches an https:// URL with one GET of one file",
        )
    if azure.account is None:
        raise ProfileError(
            f"artifact location {location!r} names no storage account, which KServe's "
            "https://<account>.blob.core.windows.net/... form needs"
        )
    # ADLS Gen2 (abfss://, dfs.core.windows.net) is read through the blob endpoint:
    # KServe sends any other https:// URL to its one-file downloader.
    return f"https://{azure.account}.blob.core.windows.net/{azure.container}/{path}"


def _cannot_fetch(flavor: Flavor, location: str, what: str) -> ProfileError:
    return ProfileError(
        f"a {KIND_NAMES[flavor]} cannot fetch artifact location {location!r} ({what}); it accepts {ACCEPTS[flavor]}"
    )


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
