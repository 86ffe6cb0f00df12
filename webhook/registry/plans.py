"""A template with the configuration's defaults filled in, or why it cannot be looked up."""

from __future__ import annotations

from dataclasses import dataclass, field

from webhook.config import Settings
from webhook.templating.causes import Cause
from webhook.templating.grammar import Reference, SelectorKind, Template


class ResolutionError(Exception):
    def __init__(self, cause: Cause, message: str) -> None:
        self.cause = cause
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Plan:
    """A template with the configuration's defaults filled in."""

    registry: str
    profile: str
    reference: Reference  # selector is never DEFAULT here
    key: tuple[str, str, str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # the cache key, computed once: plans are memoised and looked up per field
        object.__setattr__(self, "key", (self.registry, self.reference.name, str(self.reference.selector)))


def plan(template: Template, namespace: str | None, settings: Settings) -> Plan:
    registry = template.registry or settings.default_registry
    profile = template.profile or settings.default_profile
    if registry not in settings.registries:
        known = ", ".join(sorted(settings.registries)) or "none"
        raise ResolutionError(Cause.INVALID, f"unknown registry {registry!r} (configured: {known})")
    if profile not in settings.known_profiles():
        known = ", ".join(sorted(settings.known_profiles()))
        raise ResolutionError(Cause.INVALID, f"unknown profile {profile!r} (known: {known})")
    policy = settings.policy(namespace)
    if not policy.allows_registry(registry):
        raise ResolutionError(
            Cause.POLICY,
            f"namespace {namespace!r} may not use registry {registry!r} (allowed: {policy.registries})",
        )
    ref = template.reference
    if not policy.allows_model(ref.name):
        raise ResolutionError(
            Cause.POLICY,
            f"namespace {namespace!r} may not use model {ref.name!r} (allowed patterns: {policy.models})",
        )
    if ref.selector.kind is SelectorKind.DEFAULT:
        selector = settings.selector_for(namespace)
        if selector is None:
            raise ResolutionError(
                Cause.INVALID,
                f"{ref.name!r} names no version and neither namespace {namespace!r} nor the global "
                "configuration sets a default selector; write name@alias, name/<version>, "
                "name/<stage> or name/latest",
            )
        ref = Reference(ref.name, selector)
    return Plan(registry, profile, ref)
