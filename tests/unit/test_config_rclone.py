"""The ``rclone:`` settings block: remote names for Seldon URIs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from webhook.config import load_settings
from webhook.templating.uris import SEED_REMOTES, Flavor, RcloneRemotes, VersionFields, render

BLOCK = TypeAdapter(RcloneRemotes)  # the rclone: block as configuration reads it


def test_defaults_are_the_seed_forms() -> None:
    assert load_settings().rclone == SEED_REMOTES


def test_the_block_is_what_the_uri_writer_takes() -> None:
    rclone = load_settings(rclone={"s3": "aws"}).rclone
    assert type(rclone) is RcloneRemotes
    assert rclone.remotes() is rclone  # no copy per render


def test_yaml_block(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "rclone": {
                    "form": "remote:",
                    "s3": "aws",
                    "azure": "azureblob",
                    "s3_buckets": {"models-minio": "minio"},
                    "azure_accounts": {"modelpinci": "azure-ci"},
                }
            }
        )
    )
    assert load_settings(path).rclone == RcloneRemotes(
        s3="aws",
        gs="gs",
        azure="azureblob",
        s3_buckets={"models-minio": "minio"},
        azure_accounts={"modelpinci": "azure-ci"},
        form="remote:",
    )


def test_environment_sets_one_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPIN_RCLONE__S3", "minio")
    assert load_settings().rclone.s3 == "minio"


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ({"s3": "s3:"}, "s3"),
        ({"gs": ""}, "gs"),
        ({"azure_accounts": {"acct": "a/b"}}, "azure_accounts"),
        ({"form": "remote:/"}, "form"),
        ({"s3_bucket": {}}, "s3_bucket"),
        # code may write colon=True; the configuration's word for it is form
        ({"colon": True}, "colon"),
    ],
)
def test_invalid_blocks_are_refused_naming_the_key(block: dict[str, object], key: str) -> None:
    with pytest.raises(ValidationError) as info:
        BLOCK.validate_python(block)
    assert [e["loc"][0] for e in info.value.errors()] == [key]


# --- the README's examples are what the code writes ------------------------------------

README = Path(__file__).resolve().parents[2] / "docs" / "templates.md"
EXAMPLE_LOCATIONS = {
    "S3 (AWS)": "s3://mlflow/7/r2/artifacts/model",
    "MinIO beside AWS": "s3://models-minio/7/r2/artifacts/model",
    "GCS": "gs://mlflow/7/r2/artifacts/model",
    "Azure Blob / ADLS Gen2": "wasbs://artifacts@modelpinci.blob.core.windows.net/10/r2/artifacts/model",
    "Azure, several accounts": "abfss://artifacts@modelpinci.dfs.core.windows.net/10/r2/artifacts/model",
}


def readme_examples() -> list[list[str]]:
    text = README.read_text()
    table = text.split("| store | modelpin configuration | URI written |", 1)[1].split("\n\n", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in table.splitlines()[2:]]


def test_readme_rclone_defaults_block_is_the_defaults() -> None:
    block = README.read_text().split("```yaml\nrclone:", 1)[1].split("```", 1)[0]
    assert BLOCK.validate_python(yaml.safe_load("rclone:" + block)["rclone"]) == RcloneRemotes()


def test_readme_rclone_examples_are_what_modelpin_writes() -> None:
    rows = readme_examples()
    assert [row[0] for row in rows] == list(EXAMPLE_LOCATIONS)
    for store, configuration, uri, secret in rows:
        settings = (
            {}
            if configuration == "defaults"
            else yaml.safe_load("{" + configuration.strip("`").replace("`, `", ", ") + "}")
        )
        remotes = BLOCK.validate_python(settings)
        fields = VersionFields("fraud", "2", "r2", EXAMPLE_LOCATIONS[store])
        written = render("auto", fields, Flavor.SELDON, {}, remotes)
        assert f"`{written}`" == uri, store
        remote = written.split("://", 1)[0]
        assert f"RCLONE_CONFIG_{remote.upper()}_TYPE:" in secret, store
        if store == "MinIO beside AWS":
            colon = BLOCK.validate_python({**settings, "form": "remote:"})
            assert f"`{render('auto', fields, Flavor.SELDON, {}, colon)}`" in README.read_text()
