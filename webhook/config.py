"""One typed settings object: YAML file, then environment, then flags.

Precedence (highest first): command-line flags, ``MODELPIN_*`` environment
variables (nested with ``__``, e.g. ``MODELPIN_CACHE__FLOATING_TTL_SECONDS``),
the YAML file named by ``--config``/``MODELPIN_CONFIG``, built-in defaults.
"""

from __future__ import annotations

import fnmatch
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from webhook.templating.grammar import Selector, parse_selector
from webhook.templating.rollout_policy import Policy, parse_policy
from webhook.templating.template_paths import KINDS
from webhook.templating.uris import BUILTIN_PROFILES, RcloneRemotes


def _validate_selector(value: str) -> str:
    parse_selector(value)
    return value


# A default selector as written (``@champion``, ``/Production``), checked when the configuration loads.
DefaultSelector = Annotated[str, AfterValidator(_validate_selector)] | None


def _rollout_policy(value: object) -> object:
    """A ``rollout:`` value read as the policy annotation is (YAML/JSON text or a mapping); a bad one is refused."""
    if value is None or isinstance(value, Policy):
        return value
    policy, problem = parse_policy(value, source="rollout")
    if problem is not None:
        # pydantic's error already names namespaces.<ns>.rollout; the problem names the key inside it
        raise ValueError(problem.removeprefix("ignored rollout: "))
    return policy


# A rollout policy (webhook.templating.rollout_policy.Policy), given as a mapping or YAML/JSON text.
RolloutPolicy = Annotated[Policy | None, BeforeValidator(_rollout_policy)]

# The ``namespaces:`` key whose policy applies to every namespace without an entry of its own.
DEFAULT_NAMESPACE_POLICY = "*"


class RegistryConfig(BaseModel):
    # A misspelt key would otherwise be ignored, and the setting meant left at its default.
    model_config = {"extra": "forbid"}

    tracking_uri: str
    # Credentials come from the environment or a mounted file so that they
    # never sit in the ConfigMap; they are SecretStr so they never get logged.
    token_env: str | None = None
    token_file: Path | None = None
    username_env: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    username: str | None = None
    # Prefix rewrites applied to artifact locations, longest prefix first,
    # e.g. {"mlflow-artifacts:/": "s3://mlflow/"} for a proxied server.
    artifact_roots: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = 1.5
    verify_tls: bool | str = True
    # Lookups in flight to this registry at once, kept below the client's connection pool
    # (32) so a lookup never queues inside the pool, where waiting would count as a failure.
    max_concurrent_lookups: int = Field(default=16, ge=1, le=32)

    def token(self) -> SecretStr | None:
        return _secret(self.token_env, self.token_file)

    def basic_auth(self) -> tuple[str, SecretStr] | None:
        user = self.username or (os.environ.get(self.username_env) if self.username_env else None)
        password = _secret(self.password_env, self.password_file)
        if user and password:
            return user, password
        return None


def _secret(env: str | None, path: Path | None) -> SecretStr | None:
    if env and os.environ.get(env):
        return SecretStr(os.environ[env])
    if path and path.is_file():
        return SecretStr(path.read_text().strip())
    return None


# MLflow's limit on a tag key's length.
MAX_TAG_KEY_CHARS = 250


class NamespacePolicy(BaseModel):
    """What one namespace may use. A field an entry does not set is the ``"*"`` entry's."""

    # A misspelt key would otherwise be ignored, and the namespace left without the restriction meant.
    model_config = {"extra": "forbid"}

    default_selector: DefaultSelector = None
    # None: any. Registries are matched by name, models by shell glob (fnmatch).
    registries: list[str] | None = None
    models: list[str] | None = None
    # None: any version. Otherwise a version may run here only when it carries each tag with that value.
    require_tags: dict[str, str] | None = None
    # None: the global setting. Whether a version's MLmodel flavors must fit what the object runs.
    servability: Literal["deny", "warn", "off"] | None = None
    # None: no progressive rollout; a registry move switches the object at once. The object's
    # modelpin.io/rollout-policy annotation, when set, wins over this.
    rollout: RolloutPolicy = None

    @field_validator("require_tags")
    @classmethod
    def _check_tags(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if not key.strip() or len(key) > MAX_TAG_KEY_CHARS:
                raise ValueError(
                    f"require_tags key {key!r}: expected a tag name of 1 to {MAX_TAG_KEY_CHARS} characters"
                )
        return value

    def inheriting(self, default: NamespacePolicy) -> NamespacePolicy:
        """This entry with every field it does not set taken from ``default``."""
        unset = {name: getattr(default, name) for name in type(self).model_fields if name not in self.model_fields_set}
        return self.model_copy(update=unset) if unset else self

    def allows_registry(self, registry: str) -> bool:
        return self.registries is None or registry in self.registries

    def allows_model(self, name: str) -> bool:
        return self.models is None or any(fnmatch.fnmatchcase(name, pat) for pat in self.models)


class CacheConfig(BaseModel):
    # A misspelt key would otherwise be ignored, and the setting meant left at its default.
    model_config = {"extra": "forbid"}

    pinned_ttl_seconds: float = 3600.0
    floating_ttl_seconds: float = 10.0
    # How old a cached answer may be and still be served (with a warning)
    # when the registry cannot answer.
    max_stale_seconds: float = 600.0
    # "No such model/alias/version" answers are kept this long, so a review naming
    # many missing references cannot make every admission ask the registry again.
    not_found_ttl_seconds: float = Field(default=5.0, ge=0)
    max_entries: int = 10000


class RegistryHealthConfig(BaseModel):
    """The circuit breaker in front of each registry (webhook.registry.health)."""

    # A misspelt key would otherwise be ignored, and the setting meant left at its default.
    model_config = {"extra": "forbid"}

    enabled: bool = True
    # Consecutive failed calls (no answer, 5xx, anything but the registry's word) that open the circuit.
    failure_threshold: int = Field(default=5, ge=1)
    # While open, no call goes out; the interval grows per reopening, up to the maximum, jittered by +-jitter.
    open_seconds: float = Field(default=1.0, gt=0)
    max_open_seconds: float = Field(default=5.0, gt=0)
    backoff_multiplier: float = Field(default=2.0, ge=1)
    jitter: float = Field(default=0.2, ge=0, lt=1)


DEFAULT_KINDS = [k.reconciled for k in KINDS]


class ReconcilerConfig(BaseModel):
    # A misspelt key would otherwise be ignored, and the setting meant left at its default.
    model_config = {"extra": "forbid"}

    kinds: list[str] = Field(default_factory=lambda: list(DEFAULT_KINDS))  # group/version/plural
    poll_interval_seconds: float = 30.0
    concurrency: int = 8  # registry lookups in flight during a poll
    lease_name: str = "modelpin-reconciler"
    lease_namespace: str = Field(default_factory=lambda: os.environ.get("POD_NAMESPACE", "modelpin-system"))
    lease_duration_seconds: int = 15
    # client-go's defaults scaled to the lease (15 s lease: 10 s deadline, 2 s retry). A leader that has
    # not renewed for the deadline stops working; it must be shorter than the lease, so that it stops
    # before a standby may take over.
    lease_renew_deadline_seconds: float | None = None  # None: 2/3 of the lease
    lease_retry_period_seconds: float | None = None  # None: 2/15 of the lease
    apiserver_timeout_seconds: float = 10.0  # every apiserver call but a watch; a watch's read gap, added to it
    watch_timeout_seconds: int = 300  # the server ends a watch after this; it is resumed from its bookmark
    list_page_size: int = 500
    touch_rate_per_second: float = 20.0  # client-side limit on touches, so a mass move cannot flood the apiserver
    touch_burst: int = 20
    # Polling asks search_registered_models for every model's aliases and latest versions and resolves only
    # the references of models that changed; a full compare still runs at this interval, for what search does
    # not show (a tag changed on an aliased version that is not the latest of its stage).
    full_compare_interval_seconds: float = 3600.0
    max_delivery_bytes: int = 64 * 1024
    max_delivery_future_seconds: float = 60.0
    # The shared secret MLflow signs deliveries with, from the environment or a mounted file.
    mlflow_secret_env: str = "MODELPIN_MLFLOW_WEBHOOK_SECRET"
    mlflow_secret_file: Path | None = None
    max_delivery_age_seconds: float = 300.0
    warning_interval_seconds: float = 600.0  # at most one registry-error Event per object per interval

    def mlflow_secret(self) -> SecretStr | None:
        return _secret(self.mlflow_secret_env, self.mlflow_secret_file)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELPIN_", env_nested_delimiter="__", extra="forbid")

    default_registry: str = "mlflow"
    default_profile: str = "auto"
    default_selector: DefaultSelector = None
    registries: dict[str, RegistryConfig] = Field(default_factory=dict)
    # Pattern profiles: a URI pattern over the version's fields,
    # e.g. "oci://quay.io/org/{name}:{tags[git_commit]}".
    profiles: dict[str, str] = Field(default_factory=dict)
    rclone: RcloneRemotes = Field(default_factory=RcloneRemotes)
    namespaces: dict[str, NamespacePolicy] = Field(default_factory=dict)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    registry_health: RegistryHealthConfig = Field(default_factory=RegistryHealthConfig)
    lookup_deadline_seconds: float = 2.0
    # At admission: check that a version's MLmodel flavors fit what the object runs (deny: 422,
    # warn: a warning kubectl prints, off). Namespace entries may set their own.
    servability: Literal["deny", "warn", "off"] = "off"
    # Distinct registry references one review may name; more is denied (422) naming the limit.
    max_references_per_review: int = Field(default=100, ge=1)
    # Request userInfo.username values whose modelpin.io/refresh changes are honoured;
    # anyone else's token change is reverted to the old object's token.
    reconciler_usernames: list[str] = Field(
        default_factory=lambda: ["system:serviceaccount:modelpin-system:modelpin-reconciler"]
    )
    # With tls_client_ca: the client certificate must also name one of these (CN or DNS SAN);
    # empty accepts any certificate the CA signed.
    tls_client_names: list[str] = Field(default_factory=list)
    # uvicorn's guards: connections served at once (503 above) and seconds to read a request.
    limit_concurrency: int | None = Field(default=1000, ge=1)
    request_read_timeout_seconds: float = Field(default=10.0, gt=0)
    max_body_bytes: int = 3 * 1024 * 1024
    cert_reload_seconds: float = 5.0
    # With a CA, /mutate answers only callers presenting a certificate it signed (the apiserver,
    # through its AdmissionConfiguration kubeConfigFile); other routes stay open to probes.
    tls_client_ca: Path | None = None
    reconciler: ReconcilerConfig = Field(default_factory=ReconcilerConfig)
    # The CA bundle that verifies the Prometheus a rollout policy's analysis queries over https;
    # None: the system's trust store.
    rollout_prometheus_ca: Path | None = None
    config_file: Path | None = None

    @field_validator("namespaces")
    @classmethod
    def _inherit_default_policy(cls, value: dict[str, NamespacePolicy]) -> dict[str, NamespacePolicy]:
        # Merged once here, so that a lookup of a namespace's policy stays a dict access.
        default = value.get(DEFAULT_NAMESPACE_POLICY)
        if default is None:
            return value
        return {name: p if name == DEFAULT_NAMESPACE_POLICY else p.inheriting(default) for name, p in value.items()}

    @field_validator("profiles")
    @classmethod
    def _no_builtin_override(cls, value: dict[str, str]) -> dict[str, str]:
        clash = sorted(set(value) & set(BUILTIN_PROFILES))
        if clash:
            raise ValueError(f"profiles {clash} are built in and cannot be redefined")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_path()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    def policy(self, namespace: str | None) -> NamespacePolicy:
        """The namespace's own entry (its unset fields the ``"*"`` entry's), else the ``"*"`` entry, else none."""
        if namespace and namespace in self.namespaces:
            return self.namespaces[namespace]
        return self.namespaces.get(DEFAULT_NAMESPACE_POLICY) or _NO_POLICY

    def selector_for(self, namespace: str | None) -> Selector | None:
        ns = self.policy(namespace).default_selector
        chosen = ns or self.default_selector
        return parse_selector(chosen) if chosen else None

    def known_profiles(self) -> set[str]:
        return set(BUILTIN_PROFILES) | set(self.profiles)


# What a namespace may use when no entry and no "*" entry say: anything. Built once: a pydantic
# model's construction costs more than the rest of a policy lookup, made several times per review.
_NO_POLICY = NamespacePolicy()

# pydantic-settings builds sources in a classmethod, so the file chosen by a
# flag reaches it through a context variable rather than a class attribute.
_CONFIG_PATH: ContextVar[Path | None] = ContextVar("modelpin_config_path", default=None)


def _config_path() -> Path | None:
    chosen = _CONFIG_PATH.get()
    if chosen is not None:
        return chosen
    env = os.environ.get("MODELPIN_CONFIG")
    return Path(env) if env else None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from the file, the environment and explicit overrides."""
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"configuration file {config_file} does not exist")
    token = _CONFIG_PATH.set(config_file)
    try:
        clean = {k: v for k, v in overrides.items() if v is not None}
        settings = Settings(**clean)
    finally:
        _CONFIG_PATH.reset(token)
    settings.config_file = config_file
    return settings
