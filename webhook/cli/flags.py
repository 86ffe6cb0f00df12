"""Settings and the resolver from command-line flags: shared by every subcommand."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from webhook.config import RegistryConfig, Settings, load_settings
from webhook.registry.clients import open_registry
from webhook.registry.resolver import Resolver
from webhook.tools import embedded

if TYPE_CHECKING:
    pass


def _registry_flag(value: str) -> tuple[str, str]:
    name, sep, uri = value.partition("=")
    if not sep or not name or not uri:
        raise argparse.ArgumentTypeError(f"expected NAME=TRACKING_URI, got {value!r}")
    return name, uri


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("MODELPIN_CONFIG"),
        help="YAML configuration file",
    )
    parser.add_argument(
        "--registry",
        action="append",
        type=_registry_flag,
        default=[],
        metavar="NAME=TRACKING_URI",
        help="add or override a registry's tracking URI (repeatable)",
    )
    parser.add_argument("--default-selector", help="selector for bare model names, e.g. @champion or /Production")
    parser.add_argument("--default-profile", help="profile for models:/ URIs (default: auto)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def settings_from(args: argparse.Namespace) -> Settings:
    config = Path(args.config) if args.config else None
    settings = load_settings(config, default_selector=args.default_selector, default_profile=args.default_profile)
    for name, uri in args.registry:
        existing = settings.registries.get(name)
        settings.registries[name] = (
            existing.model_copy(update={"tracking_uri": uri}) if existing else RegistryConfig(tracking_uri=uri)
        )
    for line in cleartext_credentials(settings):
        print(f"warning: {line}", file=sys.stderr, flush=True)
    return settings


def cleartext_credentials(settings: Settings) -> list[str]:
    """A warning per registry whose credentials would cross the network unencrypted."""
    return [
        f"registry {name!r} sends its credentials over plain http ({cfg.tracking_uri}); use https"
        for name, cfg in settings.registries.items()
        if cfg.tracking_uri.startswith("http://") and (cfg.token() is not None or cfg.basic_auth() is not None)
    ]


def build_resolver(settings: Settings, *, read_local: bool = False) -> Resolver:
    registries = {name: open_registry(name, cfg) for name, cfg in settings.registries.items()}
    return Resolver(settings, registries, read_local=read_local)


def prepare_embedded(settings: Settings) -> bool:
    if settings.registries:
        return False
    for line in embedded.prepare(settings):
        print(line, flush=True)
    return True


def prepare_embedded_quietly(settings: Settings) -> None:
    if not settings.registries:
        for line in embedded.prepare(settings):
            print(line, file=sys.stderr)
