from __future__ import annotations

import pytest

from webhook.model.uris import (
    AzureLocation,
    Flavor,
    ProfileError,
    VersionFields,
    is_fetchable,
    map_artifact_root,
    parse_azure,
    render,
)

WASBS = "wasbs://artifacts@modelpinci.blob.core.windows.net/mlflow/10/run/artifacts/model"
KSERVE_BLOB = "https://modelpinci.blob.core.windows.net/artifacts/mlflow/10/run/artifacts/model"
SELDON_BLOB = "wasbs://artifacts/mlflow/10/run/artifacts/model"
MODELCAR = {"modelcar": "oci://quay.io/rhoai/{name}:{tags[git_commit]}"}


def fields(location: str, **kw: object) -> VersionFields:
    values: dict[str, object] = {"name": "jukebox", "version": "3", "run_id": "r3", "location": location}
    values.update(kw)
    return VersionFields(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("group", "flavor"),
    [
        ("serving.kserve.io", Flavor.KSERVE),
        ("machinelearning.seldon.io", Flavor.SELDON),
        ("mlops.seldon.io", Flavor.SELDON),
        ("apps", Flavor.GENERIC),
        ("", Flavor.GENERIC),
    ],
)
def test_flavor_for_group(group: str, flavor: Flavor) -> None:
    assert Flavor.for_group(group) is flavor


# --- s3 / gcs ------------------------------------------------------------------


def test_s3_profile() -> None:
    assert render("s3", fields("s3://b/p"), Flavor.KSERVE, {}) == "s3://b/p"
    assert render("s3", fields("s3a://b/p"), Flavor.SELDON, {}) == "s3://b/p"


def test_s3_profile_rejects_other_storage() -> None:
    with pytest.raises(ProfileError) as info:
        render("s3", fields("gs://b/p"), Flavor.KSERVE, {})
    assert str(info.value) == (
        "profile 's3' needs a s3:// location but the version's artifact location is 'gs://b/p' (gs); "
        "use the matching profile, 'auto', or map it with artifact_roots"
    )


def test_s3_profile_names_a_local_path() -> None:
    with pytest.raises(ProfileError, match=r"'/tmp/mlruns/1' \(a local path\)"):
        render("s3", fields("/tmp/mlruns/1"), Flavor.KSERVE, {})


def test_gcs_profile() -> None:
    assert render("gcs", fields("gs://b/p"), Flavor.KSERVE, {}) == "gs://b/p"
    assert render("gcs", fields("gcs://b/p"), Flavor.KSERVE, {}) == "gs://b/p"
    with pytest.raises(ProfileError, match="profile 'gcs' needs a gs:// location"):
        render("gcs", fields("s3://b/p"), Flavor.KSERVE, {})


# --- blob: the kind decides ------------------------------------------------------


def test_blob_kserve_form() -> None:
    assert render("blob", fields(WASBS), Flavor.KSERVE, {}) == KSERVE_BLOB
    assert render("blob", fields(WASBS), Flavor.GENERIC, {}) == KSERVE_BLOB


def test_blob_seldon_form() -> None:
    assert render("blob", fields(WASBS), Flavor.SELDON, {}) == SELDON_BLOB


@pytest.mark.parametrize(
    "location",
    [
        WASBS,
        "wasb://artifacts@modelpinci.blob.core.windows.net/mlflow/10/run/artifacts/model",
        "abfss://artifacts@modelpinci.dfs.core.windows.net/mlflow/10/run/artifacts/model",
        KSERVE_BLOB,
        KSERVE_BLOB + "/",
    ],
)
def test_blob_accepts_every_azure_spelling(location: str) -> None:
    assert render("blob", fields(location), Flavor.KSERVE, {}) == KSERVE_BLOB
    assert render("blob", fields(location), Flavor.SELDON, {}) == SELDON_BLOB


def test_blob_short_form_is_enough_for_seldon_but_not_kserve() -> None:
    assert render("blob", fields("wasbs://artifacts/a/b"), Flavor.SELDON, {}) == "wasbs://artifacts/a/b"
    with pytest.raises(ProfileError, match="names no storage account"):
        render("blob", fields("wasbs://artifacts/a/b"), Flavor.KSERVE, {})


def test_blob_rejects_non_azure() -> None:
    with pytest.raises(ProfileError, match=r"profile 'blob' needs an Azure Blob location .* is 's3://b/p'"):
        render("blob", fields("s3://b/p"), Flavor.SELDON, {})


def test_parse_azure() -> None:
    assert parse_azure(WASBS) == AzureLocation("modelpinci", "artifacts", "mlflow/10/run/artifacts/model")
    assert parse_azure(KSERVE_BLOB) == AzureLocation("modelpinci", "artifacts", "mlflow/10/run/artifacts/model")
    assert parse_azure("wasbs://c/p") == AzureLocation(None, "c", "p")
    assert parse_azure("s3://c/p") is None
    assert parse_azure("https://example.com/c/p") is None


# --- auto ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    ["s3://b/p", "gs://b/p", "https://example.com/m", "http://h/m", "oci://q/i:t", "pvc://c/p", "hf://org/m"],
)
def test_auto_passes_fetchable_locations_through(location: str) -> None:
    for flavor in Flavor:
        assert render("auto", fields(location), flavor, {}) == location


def test_auto_writes_azure_for_the_kind() -> None:
    assert render("auto", fields(WASBS), Flavor.KSERVE, {}) == KSERVE_BLOB
    assert render("auto", fields(WASBS), Flavor.SELDON, {}) == SELDON_BLOB


@pytest.mark.parametrize(
    "location", ["file:///tmp/mlruns/1/a/artifacts", "mlflow-artifacts:/1/a/artifacts", "/mnt/x", "dbfs:/x"]
)
def test_auto_rejects_locations_a_pod_cannot_fetch(location: str) -> None:
    with pytest.raises(ProfileError) as info:
        render("auto", fields(location), Flavor.KSERVE, {})
    assert str(info.value) == (
        f"artifact location {location!r} has no form a serving pod accepts: it cannot be fetched by a serving "
        "pod; map it to object storage with the registry's artifact_roots setting"
    )


def test_unknown_profile() -> None:
    with pytest.raises(ProfileError, match="unknown profile 'azure'"):
        render("azure", fields("s3://b"), Flavor.KSERVE, {})


def test_is_fetchable() -> None:
    assert is_fetchable("s3://b")
    assert is_fetchable(WASBS)
    assert is_fetchable("wasbs://c/p")
    assert not is_fetchable("mlflow-artifacts:/x")
    assert not is_fetchable("file:///x")


# --- artifact roots ----------------------------------------------------------------


def test_artifact_root_longest_prefix_wins() -> None:
    roots = {
        "mlflow-artifacts:/": "s3://mlflow/",
        "mlflow-artifacts:/10/": "s3://special/ten/",
        "mlflow-artifacts:/1": "s3://one/",
    }
    assert map_artifact_root("mlflow-artifacts:/10/r/a", roots) == "s3://special/ten/r/a"
    assert map_artifact_root("mlflow-artifacts:/11/r/a", roots) == "s3://one/1/r/a"
    assert map_artifact_root("mlflow-artifacts:/2/r/a", roots) == "s3://mlflow/2/r/a"
    assert map_artifact_root("s3://already/there", roots) == "s3://already/there"
    assert map_artifact_root("mlflow-artifacts:/2", {}) == "mlflow-artifacts:/2"


# --- pattern profiles ----------------------------------------------------------------


def test_pattern_profile_modelcar() -> None:
    f = fields("s3://b/p", tags={"git_commit": "abc123"})
    assert render("modelcar", f, Flavor.KSERVE, MODELCAR) == "oci://quay.io/rhoai/jukebox:abc123"


def test_pattern_profile_all_fields() -> None:
    pattern = {"p": "{location}|{name}|{version}|{run_id}|{tags[a]}"}
    assert render("p", fields("s3://b/p", tags={"a": "x"}), Flavor.SELDON, pattern) == "s3://b/p|jukebox|3|r3|x"


def test_pattern_profile_missing_tag() -> None:
    with pytest.raises(ProfileError) as info:
        render("modelcar", fields("s3://b/p", tags={"other": "x"}), Flavor.KSERVE, MODELCAR)
    assert str(info.value) == "version 3 of 'jukebox' has no tag 'git_commit', which profile 'modelcar' needs"


def test_pattern_profile_unknown_field() -> None:
    with pytest.raises(ProfileError) as info:
        render("p", fields("s3://b"), Flavor.KSERVE, {"p": "oci://x/{model}"})
    assert str(info.value) == "unknown field {model}; known: name, version, run_id, location, tags[...]"


@pytest.mark.parametrize("pattern", ["oci://x/{0}", "oci://x/{name", "oci://x/{name.nope}"])
def test_pattern_profile_malformed(pattern: str) -> None:
    with pytest.raises(ProfileError, match=r"profile 'p' pattern .* cannot be applied: "):
        render("p", fields("s3://b"), Flavor.KSERVE, {"p": pattern})


def test_pattern_profile_ignores_location_fetchability() -> None:
    f = fields("mlflow-artifacts:/x", tags={"git_commit": "c"})
    assert render("modelcar", f, Flavor.KSERVE, MODELCAR) == "oci://quay.io/rhoai/jukebox:c"
