from __future__ import annotations

import dataclasses

import pytest

from tests.support.uri_table import PER_BUCKET
from webhook.templating.uris import (
    BUILTIN_PROFILES,
    KIND_NAMES,
    SEED_REMOTES,
    AzureLocation,
    Flavor,
    ProfileError,
    VersionFields,
    check_remote_name,
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

KSERVE_ONLY = [
    "https://example.com/m",
    "http://h/m",
    "oci://q/i:t",
    "hdfs://nn:8020/p",
    "webhdfs://nn/p",
    "hf://org/m",
    "modelscope://org/m",  # kserve-storage 0.21's _download_ms
    "https://acct.file.core.windows.net/share/m",  # Azure Files
    "https://acct.z12.blob.storage.azure.net/c/m",  # Azure Blob DNS-zone endpoint
    "https://github.com/org/m.git",  # git repository
]


@pytest.mark.parametrize("location", ["s3://b/p", "gs://b/p", "pvc://c/p", *KSERVE_ONLY])
def test_auto_passes_through_what_kserve_fetches(location: str) -> None:
    assert render("auto", fields(location), Flavor.KSERVE, {}) == location
    assert render("auto", fields(location), Flavor.GENERIC, {}) == location


@pytest.mark.parametrize("location", ["s3://b/p", "gs://b/p", "https://example.com/m.tar.gz", "http://h/m.joblib"])
def test_auto_passes_through_what_a_trained_model_fetches(location: str) -> None:
    assert render("auto", fields(location), Flavor.KSERVE_AGENT, {}) == location


@pytest.mark.parametrize(
    ("location", "scheme"),
    [("pvc://c/p", "pvc"), ("oci://q/i:t", "oci"), ("hf://org/m", "hf"), ("modelscope://org/m", "modelscope")],
)
def test_auto_denies_what_a_trained_model_cannot_fetch(location: str, scheme: str) -> None:
    with pytest.raises(ProfileError) as info:
        render("auto", fields(location), Flavor.KSERVE_AGENT, {})
    assert str(info.value) == (
        f"a KServe TrainedModel (model agent) cannot fetch artifact location {location!r} ({scheme}://); "
        "it accepts s3://, gs://, http(s):// (one file)"
    )


def test_trained_model_hdfs_is_denied_at_render() -> None:
    with pytest.raises(ProfileError) as info:
        render("auto", fields("hdfs://nn:8020/m/7"), Flavor.KSERVE_AGENT, {})
    assert str(info.value) == (
        "a KServe TrainedModel (model agent) cannot fetch artifact location 'hdfs://nn:8020/m/7' (hdfs://); "
        "it accepts s3://, gs://, http(s):// (one file)"
    )


@pytest.mark.parametrize(
    "location", [WASBS, KSERVE_BLOB, "wasbs://artifacts/a/b", "https://a.dfs.core.windows.net/c/p"]
)
@pytest.mark.parametrize("profile", ["auto", "blob"])
def test_an_azure_folder_is_denied_for_a_trained_model(location: str, profile: str) -> None:
    with pytest.raises(ProfileError) as info:
        render(profile, fields(location), Flavor.KSERVE_AGENT, {})
    assert str(info.value) == (
        f"a KServe TrainedModel (model agent) cannot fetch artifact location {location!r} (an Azure Blob folder: "
        "the model agent fetches an https:// URL with one GET of one file); it accepts s3://, gs://, http(s):// "
        "(one file)"
    )


@pytest.mark.parametrize("location", KSERVE_ONLY)
def test_auto_denies_what_rclone_cannot_fetch(location: str) -> None:
    # rclone would read the scheme as a remote name, which no Seldon secret defines.
    scheme = location.split(":", 1)[0]
    with pytest.raises(ProfileError) as info:
        render("auto", fields(location), Flavor.SELDON, {})
    assert str(info.value) == (
        f"a Seldon SeldonDeployment/Model (rclone) cannot fetch artifact location {location!r} ({scheme}://); "
        "it accepts S3 (s3://, s3a://), GCS (gs://) and Azure Blob or ADLS Gen2 locations, written for their rclone "
        "remotes, and pvc://"
    )


def test_auto_seldon_defaults_keep_the_seed_forms() -> None:
    assert render("auto", fields("s3://b/p"), Flavor.SELDON, {}) == "s3://b/p"
    assert render("auto", fields("gs://b/p"), Flavor.SELDON, {}) == "gs://b/p"
    assert render("auto", fields("pvc://claim/p"), Flavor.SELDON, {}) == "pvc://claim/p"
    assert render("auto", fields(WASBS), Flavor.SELDON, {}) == SELDON_BLOB


def test_auto_writes_azure_for_the_kind() -> None:
    assert render("auto", fields(WASBS), Flavor.KSERVE, {}) == KSERVE_BLOB
    assert render("auto", fields(WASBS), Flavor.SELDON, {}) == SELDON_BLOB


def test_auto_keeps_a_kserve_blob_url_byte_for_byte() -> None:
    # An already recorded URI must not change under re-resolution (the reconciler compares strings).
    assert render("auto", fields(KSERVE_BLOB + "/"), Flavor.KSERVE, {}) == KSERVE_BLOB + "/"


@pytest.mark.parametrize(
    "location",
    [
        "abfss://artifacts@modelpinci.dfs.core.windows.net/mlflow/10/run/artifacts/model",
        "abfs://artifacts@modelpinci.dfs.core.windows.net/mlflow/10/run/artifacts/model",
        "https://modelpinci.dfs.core.windows.net/artifacts/mlflow/10/run/artifacts/model",
        "https://modelpinci.dfs.core.windows.net/artifacts/mlflow/10/run/artifacts/model/",
    ],
)
@pytest.mark.parametrize("profile", ["auto", "blob"])
def test_adls_gen2_goes_through_the_blob_endpoint(location: str, profile: str) -> None:
    # KServe sends a dfs https:// URL to its one-file downloader; the blob endpoint lists the folder.
    assert render(profile, fields(location), Flavor.KSERVE, {}) == KSERVE_BLOB
    assert render(profile, fields(location), Flavor.SELDON, {}) == SELDON_BLOB


@pytest.mark.parametrize(("location", "written"), [("s3a://b/p", "s3://b/p"), ("gcs://b/p", "gs://b/p")])
def test_auto_writes_the_scheme_the_fetchers_know(location: str, written: str) -> None:
    for flavor in Flavor:
        assert render("auto", fields(location), flavor, {}) == written


# --- Seldon: rclone remotes --------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "profile", "default", "configured"),
    [
        ("s3://mlflow/7/m", "s3", "s3://mlflow/7/m", "aws://mlflow/7/m"),
        ("s3a://mlflow/7/m", "auto", "s3://mlflow/7/m", "aws://mlflow/7/m"),
        ("s3://models-minio/7/m", "auto", "s3://models-minio/7/m", "minio://models-minio/7/m"),
        ("gs://bkt/7/m", "gcs", "gs://bkt/7/m", "gcs://bkt/7/m"),
        ("gs://other-project/7/m", "auto", "gs://other-project/7/m", "gcs2://other-project/7/m"),
        (WASBS, "blob", SELDON_BLOB, "azure_ci://artifacts/mlflow/10/run/artifacts/model"),
        (
            "wasbs://c@otheraccount.blob.core.windows.net/p",
            "auto",
            "wasbs://c/p",
            "azureblob://c/p",
        ),
        ("wasbs://c/p", "auto", "wasbs://c/p", "azureblob://c/p"),  # no account: the scheme's remote
        ("https://modelpinci.dfs.core.windows.net/c/p", "auto", "wasbs://c/p", "azure_ci://c/p"),
    ],
)
def test_seldon_remote_per_scheme_bucket_and_account(
    location: str, profile: str, default: str, configured: str
) -> None:
    assert render(profile, fields(location), Flavor.SELDON, {}) == default
    assert render(profile, fields(location), Flavor.SELDON, {}, SEED_REMOTES) == default
    assert render(profile, fields(location), Flavor.SELDON, {}, PER_BUCKET) == configured


@pytest.mark.parametrize(
    ("location", "written"),
    [
        ("s3://mlflow/7/m", "aws:mlflow/7/m"),
        ("s3://models-minio/7/m", "minio:models-minio/7/m"),
        ("gs://bkt/7/m", "gcs:bkt/7/m"),
        (WASBS, "azure_ci:artifacts/mlflow/10/run/artifacts/model"),
    ],
)
def test_seldon_colon_form(location: str, written: str) -> None:
    remotes = dataclasses.replace(PER_BUCKET, form="remote:")
    assert render("auto", fields(location), Flavor.SELDON, {}, remotes) == written
    # code may say colon=True for the same form
    assert dataclasses.replace(remotes, form="remote://", colon=True) == remotes


def test_the_builtin_profiles_are_the_ones_render_knows() -> None:
    assert list(BUILTIN_PROFILES) == ["auto", "s3", "gcs", "blob"]
    stores = {"auto": "s3://b/p", "s3": "s3://b/p", "gcs": "gs://b/p", "blob": WASBS}
    for profile in BUILTIN_PROFILES:
        assert render(profile, fields(stores[profile]), Flavor.KSERVE, {}).startswith(("s3://", "gs://", "https://"))
    with pytest.raises(ProfileError, match="unknown profile 'azure'"):
        render("azure", fields("s3://b"), Flavor.KSERVE, {})


@pytest.mark.parametrize("flavor", [Flavor.KSERVE, Flavor.KSERVE_AGENT, Flavor.GENERIC])
def test_remotes_apply_to_seldon_only(flavor: Flavor) -> None:
    assert render("auto", fields("s3://models-minio/7/m"), flavor, {}, PER_BUCKET) == "s3://models-minio/7/m"
    assert render("gcs", fields("gs://bkt/m"), flavor, {}, PER_BUCKET) == "gs://bkt/m"


def test_remotes_do_not_touch_pattern_profiles() -> None:
    f = fields("s3://models-minio/7/m", tags={"git_commit": "c"})
    assert render("modelcar", f, Flavor.SELDON, MODELCAR, PER_BUCKET) == "oci://quay.io/rhoai/jukebox:c"


@pytest.mark.parametrize("name", ["s3", "gs", "azureblob", "minio-eu.1", "my remote", "a+b@c", "_x"])
def test_remote_names_rclone_accepts(name: str) -> None:
    assert check_remote_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", " x", "x ", "s3:", "a/b", "a:b"])
def test_remote_names_rclone_refuses(name: str) -> None:
    with pytest.raises(ValueError, match="is not an rclone remote name"):
        check_remote_name(name)


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


def test_denials_name_each_fetchers_kinds_from_the_catalogue() -> None:
    assert KIND_NAMES == {
        Flavor.KSERVE: "KServe InferenceService (storage initializer)",
        Flavor.KSERVE_AGENT: "KServe TrainedModel (model agent)",
        Flavor.SELDON: "Seldon SeldonDeployment/Model (rclone)",
        Flavor.GENERIC: "this kind",
    }
