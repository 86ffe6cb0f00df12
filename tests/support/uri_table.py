"""What modelpin writes for each artifact location form, kind and profile, computed from the code.

``python -m tests.support.uri_table [--compact]`` prints it as Markdown; with kserve-storage
installed, every URI written for a KServe kind is also routed through KServe's
own storage-initializer dispatch (``Storage.download``, downloads stubbed) and the
branch it took is shown. ``tests/integration/test_kserve_storage.py`` asserts the
same rows.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from webhook.templating.uris import Flavor, ProfileError, RcloneRemotes, VersionFields, render

ACCOUNT = "modelpinci"
LOCATIONS: list[tuple[str, str]] = [
    ("s3", "s3://mlflow/7/r2/artifacts/model"),
    ("s3a", "s3a://mlflow/7/r2/artifacts/model"),
    ("gs", "gs://mlflow/7/r2/artifacts/model"),
    ("wasbs (account)", f"wasbs://artifacts@{ACCOUNT}.blob.core.windows.net/10/r2/artifacts/model"),
    ("wasb (account)", f"wasb://artifacts@{ACCOUNT}.blob.core.windows.net/10/r2/artifacts/model"),
    ("abfss (ADLS Gen2)", f"abfss://artifacts@{ACCOUNT}.dfs.core.windows.net/10/r2/artifacts/model"),
    ("https blob endpoint", f"https://{ACCOUNT}.blob.core.windows.net/artifacts/10/r2/artifacts/model"),
    ("https dfs endpoint", f"https://{ACCOUNT}.dfs.core.windows.net/artifacts/10/r2/artifacts/model"),
    ("wasbs (no account)", "wasbs://artifacts/10/r2/artifacts/model"),
    ("https (other)", "https://models.example.com/fraud/model.tar.gz"),
    ("http", "http://models.example.com/fraud/model.tar.gz"),
    ("hdfs", "hdfs://namenode:8020/mlflow/7/r2/artifacts/model"),
    ("webhdfs", "webhdfs://namenode:9870/mlflow/7/r2/artifacts/model"),
    ("oci", "oci://quay.io/example/fraud:2"),
    ("pvc", "pvc://models/fraud/2"),
    ("hf", "hf://example/fraud"),
    ("modelscope", "modelscope://example/fraud"),
    ("https blob DNS zone", f"https://{ACCOUNT}.z12.blob.storage.azure.net/artifacts/10/r2/artifacts/model"),
    ("https Azure Files", f"https://{ACCOUNT}.file.core.windows.net/share/10/r2/artifacts/model"),
    ("https git", "https://github.com/example/fraud.git"),
    ("file", "file:///mlruns/7/r2/artifacts/model"),
    ("mlflow-artifacts (unmapped)", "mlflow-artifacts:/7/r2/artifacts/model"),
]
KINDS: list[tuple[str, Flavor]] = [
    ("InferenceService", Flavor.KSERVE),
    ("TrainedModel", Flavor.KSERVE_AGENT),
    ("SeldonDeployment/Model", Flavor.SELDON),
]
PROFILES = ("auto", "s3", "gcs", "blob")
KSERVE_FLAVORS = (Flavor.KSERVE, Flavor.KSERVE_AGENT)


@dataclass(frozen=True)
class Row:
    label: str
    location: str
    kind: str
    flavor: Flavor
    profile: str
    uri: str | None
    error: str | None


def outcome(
    location: str, flavor: Flavor, profile: str, remotes: RcloneRemotes | None = None
) -> tuple[str | None, str | None]:
    fields = VersionFields("fraud", "2", "r2", location)
    try:
        if remotes is None:
            return render(profile, fields, flavor, {}), None
        return render(profile, fields, flavor, {}, remotes), None
    except ProfileError as exc:
        return None, str(exc)


def is_profile_mismatch(error: str | None) -> bool:
    """The uniform 'profile s3 needs an s3:// location' answers, left out of the table."""
    return error is not None and error.startswith(("profile 's3' needs", "profile 'gcs' needs", "profile 'blob' needs"))


def rows() -> Iterator[Row]:
    for label, location in LOCATIONS:
        for kind, flavor in KINDS:
            for profile in PROFILES:
                uri, error = outcome(location, flavor, profile)
                yield Row(label, location, kind, flavor, profile, uri, error)


# --- KServe's storage initializer ---------------------------------------------------

# The per-scheme downloaders of kserve_storage.Storage; Storage.download picks one.
DOWNLOADERS = (
    "_download_s3",
    "_download_gcs",
    "_download_hdfs",
    "_download_azure_blob",
    "_download_azure_file_share",
    "_download_hf",
    "_download_ms",
    "_download_oci",
    "_download_git_repo",
    "_download_from_uri",
    "_download_local",
)
PVC_MOUNT = "/mnt/pvc"


def as_initializer_sees_it(uri: str) -> str:
    """KServe's pod webhook mounts a ``pvc://<claim>/<path>`` claim at /mnt/pvc and passes /mnt/pvc/<path>."""
    if uri.startswith("pvc://"):
        _claim, _, path = uri[len("pvc://") :].partition("/")
        return f"{PVC_MOUNT}/{path}"
    return uri


@contextmanager
def stubbed_downloads(storage: Any) -> Iterator[list[str]]:
    """Replace each downloader with a recorder; the dispatch in ``Storage.download`` stays KServe's own."""
    taken: list[str] = []
    saved = {name: storage.__dict__[name] for name in DOWNLOADERS}
    real_exists = os.path.exists

    def recorder(name: str) -> Callable[..., str]:
        def record(uri: str, out_dir: str | None = None, *args: object, **kwargs: object) -> str:
            taken.append(name)
            return out_dir or ""

        return record

    def exists(path: Any) -> bool:
        # The mounted claim exists only in the pod.
        return str(path).startswith(PVC_MOUNT + "/") or real_exists(path)

    try:
        for name in DOWNLOADERS:
            setattr(storage, name, staticmethod(recorder(name)))
        os.path.exists = exists
        yield taken
    finally:
        os.path.exists = real_exists
        for name, value in saved.items():
            setattr(storage, name, value)


def kserve_branch(storage: Any, uri: str, out_dir: str) -> str:
    """The downloader ``Storage.download`` dispatches ``uri`` to, or the exception it raises."""
    with stubbed_downloads(storage) as taken:
        try:
            storage.download(as_initializer_sees_it(uri), out_dir)
        except Exception as exc:
            return f"raises: {str(exc).splitlines()[0]}"
    if len(taken) != 1:
        raise AssertionError(f"{uri!r} reached {taken}, not exactly one downloader")
    return taken[0]


# --- printing ---------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(storage: Any | None) -> str:
    lines = [
        "| location form | kind | profile | URI written, or the denial | kserve-storage branch |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as out:
        for row in rows():
            if is_profile_mismatch(row.error):
                continue
            written = f"`{row.uri}`" if row.uri is not None else f"denied: {row.error}"
            branch = ""
            if row.uri is not None and row.flavor in KSERVE_FLAVORS:
                branch = kserve_branch(storage, row.uri, out) if storage is not None else "(not installed)"
            lines.append(f"| {row.label} `{row.location}` | {row.kind} | {row.profile} | {_cell(written)} | {branch} |")
    lines.append("")
    lines.append(
        "Left out: a profile given a location of another store (`s3`/`gcs` with a non-S3/GCS location, `blob` "
        "with a non-Azure one) is denied for every kind with \"profile 'X' needs a ... location\"."
    )
    return "\n".join(lines)


_CANNOT = re.compile(r"cannot fetch artifact location '.*' \((?P<what>[^:)]*)[^)]*\); it accepts")


def short(error: str) -> str:
    """A denial in a few words, derived from the message modelpin sends (all are 422: Cause.INVALID)."""
    match = _CANNOT.search(error)
    if match:
        return f"422: cannot fetch {match['what']}"
    if "names no storage account" in error:
        return "422: no storage account"
    if "has no form a serving pod accepts" in error:
        return "422: not fetchable (map with artifact_roots)"
    return f"422: {error}"


def compact(storage: Any | None) -> str:
    """Location form x profile rows, one column per kind; KServe URIs with the initializer branch."""
    cells: dict[tuple[str, str], dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as out:
        for row in rows():
            if is_profile_mismatch(row.error):
                continue
            if row.uri is None:
                cell = short(row.error or "")
            else:
                cell = f"`{row.uri}`"
                if row.flavor in KSERVE_FLAVORS:
                    cell += " → " + (kserve_branch(storage, row.uri, out) if storage is not None else "(not installed)")
            cells.setdefault((row.label, row.profile), {})[row.kind] = cell
    kinds = [kind for kind, _ in KINDS]
    lines = [
        "| location form | profile | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for (label, profile), by_kind in cells.items():
        lines.append(f"| {label} | {profile} | " + " | ".join(_cell(by_kind.get(k, "")) for k in kinds) + " |")
    return "\n".join(lines)


SELDON_LOCATIONS: list[tuple[str, str]] = [
    ("s3", "s3://mlflow/7/m"),
    ("s3, MinIO bucket", "s3://models-minio/7/m"),
    ("s3a", "s3a://mlflow/7/m"),
    ("gs", "gs://mlflow/7/m"),
    ("gs, other bucket", "gs://other-project/7/m"),
    ("wasbs, account modelpinci", f"wasbs://artifacts@{ACCOUNT}.blob.core.windows.net/10/m"),
    ("abfss, account modelpinci", f"abfss://artifacts@{ACCOUNT}.dfs.core.windows.net/10/m"),
    ("https dfs, account modelpinci", f"https://{ACCOUNT}.dfs.core.windows.net/artifacts/10/m"),
    ("wasbs, another account", "wasbs://artifacts@otheraccount.blob.core.windows.net/10/m"),
    ("wasbs, no account", "wasbs://artifacts/10/m"),
]
# a remote per scheme, and others for one bucket per store and one Azure account
PER_BUCKET = RcloneRemotes(
    s3="aws",
    gs="gcs",
    azure="azureblob",
    s3_buckets={"models-minio": "minio"},
    gs_buckets={"other-project": "gcs2"},
    azure_accounts={ACCOUNT: "azure_ci"},
)
SELDON_CONFIGS: list[tuple[str, RcloneRemotes]] = [
    ("defaults", RcloneRemotes()),
    ("s3: aws, gs: gcs, azure: azureblob", RcloneRemotes(s3="aws", gs="gcs", azure="azureblob")),
    ("+ per bucket/account", PER_BUCKET),
    ("+ form: 'remote:'", dataclasses.replace(PER_BUCKET, colon=True)),
]


def seldon_remotes() -> str:
    """What auto writes for Seldon kinds under each rclone configuration."""
    lines = [
        "| location | " + " | ".join(name for name, _ in SELDON_CONFIGS) + " |",
        "|---|" + "---|" * len(SELDON_CONFIGS),
    ]
    for label, location in SELDON_LOCATIONS:
        written = []
        for _, remotes in SELDON_CONFIGS:
            uri, error = outcome(location, Flavor.SELDON, "auto", remotes)
            written.append(f"`{uri}`" if uri is not None else short(error or ""))
        lines.append(f"| {label} `{location}` | " + " | ".join(written) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    try:
        from kserve_storage import Storage  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        Storage = None
    if "--compact" in argv:
        print(compact(Storage))
        print()
        print(seldon_remotes())
    else:
        print(markdown(Storage))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
