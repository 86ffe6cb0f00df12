from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from webhook.config import (
    DEFAULT_KINDS,
    NamespacePolicy,
    RegistryConfig,
    Settings,
    load_settings,
)
from webhook.templating.grammar import Selector, SelectorKind


def write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults() -> None:
    s = load_settings()
    assert s.default_registry == "mlflow"
    assert s.default_profile == "auto"
    assert s.default_selector is None
    assert s.registries == {}
    assert s.cache.floating_ttl_seconds == 10.0
    assert s.cache.pinned_ttl_seconds == 3600.0
    assert s.lookup_deadline_seconds == 2.0
    assert s.known_profiles() == {"auto", "s3", "gcs", "blob"}
    assert s.config_file is None


def test_yaml_file(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "c.yaml",
        {
            "default_selector": "@champion",
            "registries": {"mlflow": {"tracking_uri": "http://m", "artifact_roots": {"mlflow-artifacts:/": "s3://x/"}}},
            "profiles": {"modelcar": "oci://q/{name}"},
            "cache": {"floating_ttl_seconds": 30},
        },
    )
    s = load_settings(path)
    assert s.config_file == path
    assert s.default_selector == "@champion"
    assert s.registries["mlflow"].artifact_roots == {"mlflow-artifacts:/": "s3://x/"}
    assert s.cache.floating_ttl_seconds == 30
    assert s.cache.max_stale_seconds == 600  # untouched default
    assert s.known_profiles() == {"auto", "s3", "gcs", "blob", "modelcar"}


def test_yaml_file_from_modelpin_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path / "c.yaml", {"default_profile": "s3"})
    monkeypatch.setenv("MODELPIN_CONFIG", str(path))
    assert load_settings().default_profile == "s3"


def test_precedence_overrides_then_env_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(
        tmp_path / "c.yaml",
        {
            "default_profile": "gcs",
            "default_selector": "/Production",
            "lookup_deadline_seconds": 1.0,
            "cache": {"floating_ttl_seconds": 30, "max_stale_seconds": 60},
            "registries": {"mlflow": {"tracking_uri": "http://file", "artifact_roots": {"a:/": "s3://a/"}}},
        },
    )
    monkeypatch.setenv("MODELPIN_DEFAULT_PROFILE", "s3")
    monkeypatch.setenv("MODELPIN_DEFAULT_SELECTOR", "@env")
    monkeypatch.setenv("MODELPIN_CACHE__FLOATING_TTL_SECONDS", "5")
    monkeypatch.setenv("MODELPIN_REGISTRIES__MLFLOW__TRACKING_URI", "http://env")
    s = load_settings(path, default_selector="@flag", default_profile=None)
    assert s.default_selector == "@flag"  # override beats env and file
    assert s.default_profile == "s3"  # None override ignored; env beats file
    assert s.lookup_deadline_seconds == 1.0  # only the file sets it
    assert s.cache.floating_ttl_seconds == 5  # nested env beats file
    assert s.cache.max_stale_seconds == 60  # nested siblings from the file survive
    assert s.registries["mlflow"].tracking_uri == "http://env"
    assert s.registries["mlflow"].artifact_roots == {"a:/": "s3://a/"}


def test_missing_config_file() -> None:
    with pytest.raises(FileNotFoundError, match=r"configuration file /nonexistent\.yaml does not exist"):
        load_settings(Path("/nonexistent.yaml"))


def test_unknown_setting_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="default_selectr"):
        load_settings(write_yaml(tmp_path / "c.yaml", {"default_selectr": "@x"}))


@pytest.mark.parametrize("value", ["champion", "@", "/0", "/Prod", "/", "@champion/2"])
def test_invalid_default_selector_rejected(value: str) -> None:
    # The grammar's answers are tested in tests/unit/templating/test_grammar.py; here, that both keys use it.
    with pytest.raises(ValidationError, match=f"invalid default selector '{value}'"):
        load_settings(default_selector=value)
    with pytest.raises(ValidationError, match=f"invalid default selector '{value}'"):
        load_settings(namespaces={"ns": {"default_selector": value}})


def test_selector_for_namespace_then_global() -> None:
    s = load_settings(default_selector="@champion", namespaces={"staging": {"default_selector": "/Staging"}, "x": {}})
    assert s.selector_for("staging") == Selector(SelectorKind.STAGE, "Staging")
    assert s.selector_for("x") == Selector(SelectorKind.ALIAS, "champion")
    assert s.selector_for("unknown") == Selector(SelectorKind.ALIAS, "champion")
    assert s.selector_for(None) == Selector(SelectorKind.ALIAS, "champion")
    assert load_settings().selector_for("staging") is None


def test_namespace_policy_model_globs() -> None:
    s = load_settings(namespaces={"restricted": {"models": ["fraud*", "iris demo?"], "registries": ["mlflow"]}})
    policy = s.policy("restricted")
    assert policy.allows_model("fraud")
    assert policy.allows_model("fraud-v2")
    assert policy.allows_model("iris demo1")
    assert not policy.allows_model("iris demo10")
    assert not policy.allows_model("Fraud")  # case-sensitive
    assert not policy.allows_model("jukebox")
    assert policy.allows_registry("mlflow")
    assert not policy.allows_registry("other")


def test_unconfigured_namespace_allows_everything() -> None:
    policy = load_settings(namespaces={"restricted": {"models": []}}).policy("elsewhere")
    assert policy == NamespacePolicy()
    assert policy.allows_model("anything")
    assert policy.allows_registry("anything")
    assert not load_settings(namespaces={"restricted": {"models": []}}).policy("restricted").allows_model("x")


@pytest.mark.parametrize("name", ["auto", "s3", "gcs", "blob"])
def test_builtin_profile_redefinition_rejected(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        load_settings(profiles={name: "oci://x/{name}", "ok": "oci://y"})
    assert f"profiles ['{name}'] are built in and cannot be redefined" in str(info.value)


def test_builtin_profile_redefinition_rejected_from_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"profiles \['blob', 's3'\] are built in"):
        load_settings(write_yaml(tmp_path / "c.yaml", {"profiles": {"s3": "x", "blob": "y"}}))


# --- registry credentials ------------------------------------------------------


def test_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TOKEN", "s3cr3t-token")
    config = RegistryConfig(tracking_uri="http://m", token_env="MY_TOKEN")
    token = config.token()
    assert isinstance(token, SecretStr)
    assert token.get_secret_value() == "s3cr3t-token"
    assert "s3cr3t-token" not in repr(token)
    assert "s3cr3t-token" not in str(token)
    assert "s3cr3t-token" not in repr(config)


def test_token_from_file_when_env_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("file-token\n")
    monkeypatch.setenv("MY_TOKEN", "")
    config = RegistryConfig(tracking_uri="http://m", token_env="MY_TOKEN", token_file=tmp_path / "token")
    token = config.token()
    assert token is not None
    assert token.get_secret_value() == "file-token"


def test_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("file-token")
    monkeypatch.setenv("MY_TOKEN", "env-token")
    config = RegistryConfig(tracking_uri="http://m", token_env="MY_TOKEN", token_file=tmp_path / "token")
    assert config.token() == SecretStr("env-token")


def test_no_token() -> None:
    assert RegistryConfig(tracking_uri="http://m").token() is None
    assert RegistryConfig(tracking_uri="http://m", token_env="UNSET_VAR_X", token_file=Path("/nope")).token() is None


def test_basic_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("hunter2\n")
    monkeypatch.setenv("MLF_USER", "alice")
    config = RegistryConfig(tracking_uri="http://m", username_env="MLF_USER", password_file=tmp_path / "pw")
    auth = config.basic_auth()
    assert auth is not None
    user, password = auth
    assert user == "alice"
    assert password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(auth)


def test_basic_auth_literal_username_and_env_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLF_PW", "pw")
    config = RegistryConfig(tracking_uri="http://m", username="bob", password_env="MLF_PW")
    assert config.basic_auth() == ("bob", SecretStr("pw"))


def test_basic_auth_needs_both() -> None:
    assert RegistryConfig(tracking_uri="http://m", username="bob").basic_auth() is None
    assert RegistryConfig(tracking_uri="http://m", password_env="UNSET_VAR_X", username="bob").basic_auth() is None


def test_credentials_from_yaml_are_references_not_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOK", "tok-value")
    s = load_settings(
        write_yaml(tmp_path / "c.yaml", {"registries": {"m": {"tracking_uri": "http://m", "token_env": "TOK"}}})
    )
    assert "tok-value" not in repr(s)
    token = s.registries["m"].token()
    assert token is not None
    assert token.get_secret_value() == "tok-value"


def test_settings_is_the_settings_class() -> None:
    assert isinstance(load_settings(), Settings)


def test_the_star_entry_applies_to_namespaces_without_their_own() -> None:
    settings = Settings(
        namespaces={
            "*": {"registries": [], "models": []},
            "team-a": {"models": ["fraud*"]},
        }
    )
    assert not settings.policy("elsewhere").allows_registry("mlflow")
    assert not settings.policy(None).allows_model("fraud")
    assert settings.policy("team-a").allows_model("fraud-v2")
    assert not settings.policy("team-a").allows_model("iris")
    # without a "*" entry, a namespace without one is unrestricted, as before
    assert Settings().policy("elsewhere").allows_model("anything")


def test_a_namespace_entry_inherits_what_it_does_not_set_from_the_star_entry(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "c.yaml",
        {
            "namespaces": {
                "*": {"registries": [], "models": [], "default_selector": "@champion", "require_tags": {"a": "1"}},
                "staging": {"default_selector": "@staging"},
                "open": {"models": None, "registries": ["mlflow"], "require_tags": {}},
            }
        },
    )
    s = load_settings(path)
    staging = s.policy("staging")
    assert staging.default_selector == "@staging"
    assert not staging.allows_registry("mlflow") and not staging.allows_model("fraud")
    assert staging.require_tags == {"a": "1"}
    # a field set explicitly, even to null or empty, is the entry's own
    opened = s.policy("open")
    assert opened.allows_model("anything") and opened.allows_registry("mlflow")
    assert opened.default_selector == "@champion"
    assert opened.require_tags == {}


def test_inheritance_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPIN_NAMESPACES", '{"*": {"models": ["fraud*"]}, "team": {"registries": ["mlflow"]}}')
    team = load_settings().policy("team")
    assert team.models == ["fraud*"] and team.registries == ["mlflow"]


def test_require_tags_loads_and_is_validated() -> None:
    s = load_settings(namespaces={"prod": {"require_tags": {"validated": "true", "owner": "risk"}}})
    assert s.policy("prod").require_tags == {"validated": "true", "owner": "risk"}
    assert s.policy("elsewhere").require_tags is None
    for bad in ({"": "x"}, {" ": "x"}, {"k" * 251: "x"}, {"k": 1}, ["validated"]):
        with pytest.raises(ValidationError, match="require_tags"):
            load_settings(namespaces={"prod": {"require_tags": bad}})


def test_a_misspelt_namespace_policy_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="model"):
        load_settings(namespaces={"prod": {"model": ["fraud*"]}})


# A misspelt key at any level is refused at load, named with where it stands.
MISSPELT = [
    ({"registries": {"mlflow": {"tracking_uri": "http://m", "timeout_secs": 3}}}, "registries.mlflow.timeout_secs"),
    ({"cache": {"floating_ttl": 5}}, "cache.floating_ttl"),
    ({"reconciler": {"poll_interval": 5}}, "reconciler.poll_interval"),
    ({"registry_health": {"failures": 3}}, "registry_health.failures"),
    ({"namespaces": {"prod": {"require_tag": {"validated": "true"}}}}, "namespaces.prod.require_tag"),
    ({"rclone": {"s3_bucket": {"models": "minio"}}}, "rclone.s3_bucket"),
]


@pytest.mark.parametrize(("data", "where"), MISSPELT, ids=[where for _, where in MISSPELT])
def test_a_misspelt_nested_key_is_refused_naming_it(tmp_path: Path, data: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError) as info:
        load_settings(write_yaml(tmp_path / "c.yaml", data))
    assert where in str(info.value)
    assert [".".join(map(str, e["loc"])) for e in info.value.errors()] == [where]


def test_a_misspelt_nested_key_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPIN_CACHE__FLOATING_TTL", "5")
    with pytest.raises(ValidationError, match=r"cache\.floating_ttl"):
        load_settings()


def test_the_reconcilers_default_kinds_are_the_catalogues() -> None:
    assert (
        load_settings().reconciler.kinds
        == DEFAULT_KINDS
        == [
            "machinelearning.seldon.io/v1/seldondeployments",
            "mlops.seldon.io/v1alpha1/models",
            "serving.kserve.io/v1beta1/inferenceservices",
            "serving.kserve.io/v1alpha1/trainedmodels",
        ]
    )


def test_a_rollout_policy_per_namespace_inherited_from_the_star_entry() -> None:
    settings = Settings(
        namespaces={"*": {"rollout": "steps: [10, 50]\nstep_seconds: 60"}, "team": {}, "off": {"rollout": None}}
    )
    team = settings.policy("team").rollout
    assert team is not None and (team.steps, team.step_seconds, team.kserve) == ([10, 50], 60, "canary")
    assert settings.policy("elsewhere").rollout == team
    assert settings.policy("off").rollout is None


@pytest.mark.parametrize(
    ("rollout", "named"),
    [
        ({"steps": [50, 10]}, "steps: Value error, steps must increase"),
        ({"steps": [10], "stpe_seconds": 5}, "stpe_seconds: Extra inputs are not permitted"),
        ("steps: [", "not YAML or JSON"),
    ],
)
def test_a_bad_rollout_policy_is_refused_naming_the_key(rollout: object, named: str) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(namespaces={"team": {"rollout": rollout}})
    assert "namespaces.team.rollout" in str(err.value)
    assert named in str(err.value)


def test_the_prometheus_ca_for_rollout_analysis(tmp_path: Path) -> None:
    assert Settings().rollout_prometheus_ca is None
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"rollout_prometheus_ca": "/etc/modelpin/prometheus-ca.crt"}))
    assert load_settings(config).rollout_prometheus_ca == Path("/etc/modelpin/prometheus-ca.crt")
