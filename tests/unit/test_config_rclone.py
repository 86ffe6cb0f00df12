"""The ``rclone:`` settings block: remote names for Seldon URIs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from webhook.config import RcloneConfig, load_settings
from webhook.model.uris import SEED_REMOTES, RcloneRemotes


def test_defaults_are_the_seed_forms() -> None:
    assert load_settings().rclone.remotes() == SEED_REMOTES


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
    assert load_settings(path).rclone.remotes() == RcloneRemotes(
        s3="aws",
        gs="gs",
        azure="azureblob",
        s3_buckets={"models-minio": "minio"},
        azure_accounts={"modelpinci": "azure-ci"},
        colon=True,
    )


def test_environment_sets_one_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPIN_RCLONE__S3", "minio")
    assert load_settings().rclone.remotes().s3 == "minio"


@pytest.mark.parametrize(
    "block",
    [{"s3": "s3:"}, {"gs": ""}, {"azure_accounts": {"acct": "a/b"}}, {"form": "remote:/"}, {"s3_bucket": {}}],
)
def test_invalid_blocks_are_refused(block: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RcloneConfig.model_validate(block)
