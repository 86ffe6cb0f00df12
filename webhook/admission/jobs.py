"""Which lookup each template field needs: its plan, the record that may stand in, and how it came about.

A field held (a hold or pause on a record the stored object has too) or already at the
version its hold names needs none, and is settled here.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook.admission import history, holds
from webhook.admission.holds import Holding
from webhook.admission.outcome import Outcome, show
from webhook.registry.resolver import Plan, ResolutionError, Resolver
from webhook.templating import record_annotations as records
from webhook.templating.causes import Cause
from webhook.templating.grammar import Reference, Selector, SelectorKind, Template, TemplateError, parse
from webhook.templating.rollout_annotations import HOLD


@dataclass(slots=True)
class Job:
    pointer: str
    template: Template
    plan: Plan
    # The object's own record for this field, used when the field already
    # held that resolution and the registry cannot say anything better.
    fallback: dict[str, str] | None
    # the selector recorded (a hold's version is looked up, the template's selector recorded)
    selector: str | None = None
    how: str = history.RESOLVED


def is_trusted(pointer: str, rec: records.Records, old_rec: records.Records | None) -> bool:
    """Whether the object's record for ``pointer`` is one the stored object already had."""
    return (
        old_rec is not None
        and pointer in rec.resolved
        and old_rec.templates.get(pointer) == rec.templates.get(pointer)
        and old_rec.resolved.get(pointer) == rec.resolved[pointer]
    )


@dataclass(frozen=True, slots=True)
class Fields:
    """What every field of one review is decided against: made once per review, passed to each field's job."""

    rec: records.Records
    holding: Holding
    namespace: str | None
    resolver: Resolver
    out: Outcome


def template_job(pointer: str, text: str, trusted: bool, ctx: Fields) -> Job | None:
    out = ctx.out
    try:
        template = parse(text)
    except TemplateError as exc:
        out.errors.append(
            (
                Cause.INVALID,
                f"{pointer}: template {show(text)} does not parse: {exc.reason} at column {exc.column}",
            )
        )
        out.results["invalid"] += 1
        return None
    rec = ctx.rec
    same_text = rec.templates.get(pointer) == text and pointer in rec.resolved
    pin = ctx.holding.version_for(pointer)
    if pin is None and ctx.holding.active and same_text and _kept(pointer, trusted, ctx):
        return None
    p = _plan(pointer, template, ctx)
    if p is None:
        return None
    fallback = rec.resolved[pointer] if same_text and trusted else None
    if pin is not None:
        return _pinned_job(pointer, template, p, pin, fallback, out)
    return Job(pointer, template, p, fallback)


def recorded_job(pointer: str, trusted: bool, ctx: Fields) -> Job | None:
    text = ctx.rec.templates[pointer]
    pin = ctx.holding.version_for(pointer)
    if pin is None and ctx.holding.active and _kept(pointer, trusted, ctx):
        return None
    try:
        template = parse(text)
    except TemplateError:
        # Our own record is damaged; the field keeps the user's literal.
        ctx.out.warnings.append(f"{pointer}: dropped a recorded template that no longer parses: {show(text)}")
        return None
    p = _plan(pointer, template, ctx)
    if p is None:
        return None
    fallback = ctx.rec.resolved[pointer] if trusted else None
    if pin is not None:
        return _pinned_job(pointer, template, p, pin, fallback, ctx.out)
    return Job(pointer, template, p, fallback)


def _pinned_job(
    pointer: str, template: Template, p: Plan, pin: str, fallback: dict[str, str] | None, out: Outcome
) -> Job | None:
    """The lookup of the version a hold names for the field, with the template's registry and profile."""
    problem = holds.bad_version(pin)
    if problem is not None:
        out.errors.append((Cause.INVALID, f"{pointer}: template {show(template.text)}: {problem}"))
        out.results["invalid"] += 1
        return None
    if fallback is not None and fallback.get("version") == pin:
        # already at the held version: kept without a lookup, so a held object re-admits unchanged
        out.values[pointer] = fallback["uri"]
        out.templates[pointer] = template.text
        out.resolved[pointer] = fallback
        out.results["paused"] += 1
        return None
    held = Plan(p.registry, p.profile, Reference(p.reference.name, Selector(SelectorKind.VERSION, pin)))
    return Job(pointer, template, held, fallback, selector=str(p.reference.selector), how=history.PINNED)


def _kept(pointer: str, trusted: bool, ctx: Fields) -> bool:
    """Keep a held field's recorded resolution, if the stored object has that record too."""
    out = ctx.out
    if not trusted:
        marker = records.PAUSED if ctx.holding.paused else HOLD
        out.warnings.append(
            f"{pointer}: resolved although {marker} is set: only a record the stored object "
            "already holds is kept, and this one it does not"
        )
        return False
    rec = ctx.rec
    out.values[pointer] = rec.resolved[pointer]["uri"]
    out.templates[pointer] = rec.templates[pointer]
    out.resolved[pointer] = rec.resolved[pointer]
    out.how[pointer] = history.KEPT
    out.results["paused"] += 1
    return True


def _plan(pointer: str, template: Template, ctx: Fields) -> Plan | None:
    try:
        return ctx.resolver.plan(template, ctx.namespace)
    except ResolutionError as exc:
        ctx.out.errors.append((exc.cause, f"{pointer}: template {show(template.text)}: {exc}"))
        if exc.cause is Cause.POLICY:
            ctx.out.results["policy"] += 1
        return None
