"""Every URI modelpin writes for a KServe kind, routed through KServe's own storage-initializer dispatch.

``kserve_storage.Storage.download`` is KServe's code (PyPI ``kserve-storage``, the
``kserve`` extra); only the per-scheme downloaders are replaced, by recorders, so
the branch taken is the one a storage-initializer pod would take.

TrainedModel URIs are fetched by KServe's model agent (Go, not in the package):
for them this checks the initializer's reading and that the URI is within the
schemes TrainedModel validation accepts (s3, gs, http, https).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.uri_table import (
    KSERVE_FLAVORS,
    LOCATIONS,
    Row,
    compact,
    kserve_branch,
    markdown,
    rows,
    seldon_remotes,
)
from webhook.templating.uris import Flavor

REQUIRED = os.environ.get("MODELPIN_REQUIRE_KSERVE_STORAGE") == "1"

try:
    from kserve_storage import Storage  # type: ignore[import-untyped,unused-ignore]
except ImportError:
    if REQUIRED:
        pytest.fail(
            "MODELPIN_REQUIRE_KSERVE_STORAGE=1 but kserve-storage is not installed: pip install -e '.[test,kserve]'",
            pytrace=False,
        )
    pytest.skip("kserve-storage is not installed (pip install -e '.[test,kserve]')", allow_module_level=True)


# The branch each location form must reach once written for a KServe kind, whatever profile wrote it.
EXPECTED_BRANCH = {
    "s3": "_download_s3",
    "s3a": "_download_s3",
    "gs": "_download_gcs",
    "wasbs (account)": "_download_azure_blob",
    "wasb (account)": "_download_azure_blob",
    "abfss (ADLS Gen2)": "_download_azure_blob",
    "https blob endpoint": "_download_azure_blob",
    "https dfs endpoint": "_download_azure_blob",
    "https (other)": "_download_from_uri",
    "http": "_download_from_uri",
    "hdfs": "_download_hdfs",
    "webhdfs": "_download_hdfs",
    "oci": "_download_oci",
    "pvc": "_download_local",
    "hf": "_download_hf",
    "modelscope": "_download_ms",
    "https blob DNS zone": "_download_azure_blob",
    "https Azure Files": "_download_azure_file_share",
    "https git": "_download_git_repo",
}
TRAINED_MODEL_PREFIXES = ("s3://", "gs://", "http://", "https://")

KSERVE_ROWS = [r for r in rows() if r.flavor in KSERVE_FLAVORS and r.uri is not None]


@pytest.fixture(autouse=True)
def _no_initializer_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The dispatch reads these; a developer's shell must not change the branch.
    for name in ("STORAGE_CONFIG", "STORAGE_OVERRIDE_CONFIG", "CA_BUNDLE_CONFIGMAP_NAME"):
        monkeypatch.delenv(name, raising=False)


def _id(row: Row) -> str:
    return f"{row.kind}-{row.profile}-{row.label}"


def test_every_written_location_form_has_an_expected_branch() -> None:
    written = {r.label for r in KSERVE_ROWS}
    assert written == set(EXPECTED_BRANCH)
    # every location form in the table is either written or denied for InferenceService
    assert {label for label, _ in LOCATIONS} - written == {"wasbs (no account)", "file", "mlflow-artifacts (unmapped)"}


@pytest.mark.parametrize("row", KSERVE_ROWS, ids=_id)
def test_kserve_uri_takes_the_expected_branch(row: Row, tmp_path: Path) -> None:
    assert row.uri is not None
    assert kserve_branch(Storage, row.uri, str(tmp_path)) == EXPECTED_BRANCH[row.label]
    if row.flavor is Flavor.KSERVE_AGENT:
        assert row.uri.startswith(TRAINED_MODEL_PREFIXES)


@pytest.mark.parametrize(
    "location",
    [loc for label, loc in LOCATIONS if label in ("https dfs endpoint", "abfss (ADLS Gen2)")],
)
def test_gen2_locations_as_they_are_would_not_reach_the_blob_downloader(location: str, tmp_path: Path) -> None:
    # Why modelpin rewrites them: as they are, the dfs endpoint is KServe's one-file
    # downloader and abfss:// no branch at all.
    branch = kserve_branch(Storage, location, str(tmp_path))
    assert branch in ("_download_from_uri",) or branch.startswith("raises: Cannot recognize storage type")


def test_stubs_do_not_hide_an_unknown_scheme(tmp_path: Path) -> None:
    # The dispatch is KServe's: a scheme it has no branch for still raises.
    assert kserve_branch(Storage, "dbfs:/x", str(tmp_path)).startswith("raises: Cannot recognize storage type")


def test_stubs_are_removed_afterwards(tmp_path: Path) -> None:
    real: dict[str, Any] = {name: Storage.__dict__[name] for name in ("_download_s3", "_download_local")}
    kserve_branch(Storage, "s3://b/p", str(tmp_path))
    assert {name: Storage.__dict__[name] for name in real} == real
    assert not os.path.exists("/mnt/pvc/fraud/2")


def test_tables_print() -> None:
    text = markdown(Storage)
    assert "(not installed)" not in text
    assert "| hdfs `hdfs://namenode:8020/mlflow/7/r2/artifacts/model` | TrainedModel | auto | denied: " in text
    assert (
        "| pvc | auto | `pvc://models/fraud/2` → _download_local | 422: cannot fetch pvc | `pvc://models/fraud/2` |"
        in compact(Storage)
    )
    assert "| `minio://models-minio/7/m` | `minio:models-minio/7/m` |" in seldon_remotes()
