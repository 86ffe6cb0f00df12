"""The admission core: a validated AdmissionReview request in, a response out.

No HTTP here. Dependencies (the resolver and a clock) are passed in so the
same function serves the webhook, ``modelpin render`` and the tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook import metrics
from webhook.admission.patch import build_patch
from webhook.admission.review import AdmissionRequest, Response, allowed, denied, patched
from webhook.model import record_annotations as records
from webhook.model.causes import Cause
from webhook.model.grammar import Template, TemplateError, is_candidate, parse
from webhook.model.spec_fields import interesting_strings
from webhook.model.uris import Flavor
from webhook.registry.resolver import Lookup, Plan, ResolutionError, Resolver


@dataclass(slots=True)
class _Job:
    pointer: str
    template: Template
    plan: Plan
    # The object's own record for this field, used when the field already
    # held that resolution and the registry cannot say anything better.
    fallback: dict[str, str] | None


@dataclass(slots=True)
class Outcome:
    """What admission decided, before it is written as a response."""

    values: dict[str, str] = field(default_factory=dict)  # pointer -> new field value
    current: dict[str, str] = field(default_factory=dict)  # pointer -> value as admitted
    templates: dict[str, str] = field(default_factory=dict)
    resolved: dict[str, dict[str, str]] = field(default_factory=dict)
    errors: list[tuple[Cause, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_resolved: int = 0  # fields resolved, as counted in the metrics


async def admit(request: AdmissionRequest, *, resolver: Resolver) -> Response:
    """The answer to ``request`` (without its uid: the edge stamps it)."""
    started = time.perf_counter()
    if request["operation"] not in ("CREATE", "UPDATE"):
        metrics.ADMISSIONS.labels("skipped").observe(time.perf_counter() - started)
        return allowed()
    obj = request["object"]
    namespace = request.get("namespace")
    if namespace is None:
        metadata = obj.get("metadata")
        found = metadata.get("namespace") if isinstance(metadata, dict) else None
        namespace = found if isinstance(found, str) else None
    flavor = Flavor.for_group(request["kind"]["group"], request["kind"]["kind"])
    outcome = await decide(obj, namespace=namespace, flavor=flavor, resolver=resolver)
    if outcome.errors:
        detail = "; ".join(message for _, message in outcome.errors)
        noun = "template" if len(outcome.errors) == 1 else "templates"
        message = f"modelpin could not resolve {len(outcome.errors)} {noun}: {detail}"
        metrics.ADMISSIONS.labels("denied").observe(time.perf_counter() - started)
        return denied(outcome.errors[0][0], message, outcome.warnings)
    ops = build_patch(obj, outcome.values, outcome.templates, outcome.resolved, outcome.current)
    metrics.ADMISSIONS.labels("patched" if ops else "unchanged").observe(time.perf_counter() - started)
    return patched(ops, outcome.warnings)


def _survey(obj: Mapping[str, Any]) -> tuple[records.Records, list[tuple[str, str]]]:
    """An object's records, and the spec strings admission acts on: candidates and recorded URIs."""
    rec = records.read(obj.get("metadata") or {})
    recorded = {entry["uri"] for ptr, entry in rec.resolved.items() if ptr in rec.templates}
    return rec, interesting_strings(dict(obj), recorded)


async def decide(
    obj: Mapping[str, Any],
    *,
    namespace: str | None,
    flavor: Flavor,
    resolver: Resolver,
) -> Outcome:
    """What admission decides for ``obj``: new field values and records, or errors."""
    rec, found = _survey(obj)
    out = Outcome(warnings=list(rec.problems))
    jobs: list[_Job] = []
    for pointer, value in found:
        out.current[pointer] = value
        if is_candidate(value):
            job = _template_job(pointer, value, rec, namespace, resolver, out)
        elif rec.recorded_uri(pointer) == value:
            job = _recorded_job(pointer, rec, namespace, resolver, out)
        else:
            # A literal the user wrote, or a field that never held a template:
            # any record for it is dropped by not carrying it over.
            continue
        if job is not None:
            jobs.append(job)
    if jobs:
        await _run(jobs, rec.refresh_ms, flavor, resolver, out)
    return out


def _template_job(
    pointer: str,
    text: str,
    rec: records.Records,
    namespace: str | None,
    resolver: Resolver,
    out: Outcome,
) -> _Job | None:
    try:
        template = parse(text)
    except TemplateError as exc:
        out.errors.append(
            (
                Cause.INVALID,
                f"{pointer}: template {text!r} does not parse: {exc.reason} at column {exc.column}",
            )
        )
        metrics.RESOLUTIONS.labels("invalid").inc()
        return None
    same_text = rec.templates.get(pointer) == text and pointer in rec.resolved
    if rec.paused and same_text:
        _keep(pointer, rec, out)
        metrics.RESOLUTIONS.labels("paused").inc()
        return None
    p = _plan(pointer, template, namespace, resolver, out)
    if p is None:
        return None
    return _Job(pointer, template, p, rec.resolved[pointer] if same_text else None)


def _recorded_job(
    pointer: str, rec: records.Records, namespace: str | None, resolver: Resolver, out: Outcome
) -> _Job | None:
    text = rec.templates[pointer]
    if rec.paused:
        _keep(pointer, rec, out)
        metrics.RESOLUTIONS.labels("paused").inc()
        return None
    try:
        template = parse(text)
    except TemplateError:
        # Our own record is damaged; the field keeps the user's literal.
        out.warnings.append(f"{pointer}: dropped a recorded template that no longer parses: {text!r}")
        return None
    p = _plan(pointer, template, namespace, resolver, out)
    return None if p is None else _Job(pointer, template, p, rec.resolved[pointer])


def _keep(pointer: str, rec: records.Records, out: Outcome) -> None:
    out.values[pointer] = rec.resolved[pointer]["uri"]
    out.templates[pointer] = rec.templates[pointer]
    out.resolved[pointer] = rec.resolved[pointer]


def _plan(pointer: str, template: Template, namespace: str | None, resolver: Resolver, out: Outcome) -> Plan | None:
    try:
        return resolver.plan(template, namespace)
    except ResolutionError as exc:
        out.errors.append((exc.cause, f"{pointer}: template {template.text!r}: {exc}"))
        if exc.cause is Cause.POLICY:
            metrics.RESOLUTIONS.labels("policy").inc()
        return None


async def _run(jobs: list[_Job], refresh_ms: int, flavor: Flavor, resolver: Resolver, out: Outcome) -> None:
    deadline = time.monotonic() + resolver.settings.lookup_deadline_seconds
    by_key: dict[tuple[str, str, str], Lookup | BaseException] = {}
    misses: dict[tuple[str, str, str], Plan] = {}
    for job in jobs:
        key = job.plan.key
        if key in by_key or key in misses:
            continue
        hit = resolver.cached(job.plan, not_before_ms=refresh_ms, count=False)
        if hit is None:
            misses[key] = job.plan
        else:
            by_key[key] = hit
    if by_key:
        metrics.CACHE.labels("hit").inc(len(by_key))
    if misses:
        # only misses pay for tasks: a warm review never leaves this coroutine
        keys = list(misses)
        results = await asyncio.gather(
            *(resolver.resolve(misses[k], not_before_ms=refresh_ms, deadline=deadline) for k in keys),
            return_exceptions=True,
        )
        by_key.update(zip(keys, results, strict=True))
    warned: set[str] = set()
    for job in jobs:
        result = by_key[job.plan.key]
        try:
            if isinstance(result, BaseException):
                raise result
            uri = resolver.uri(job.plan, result.resolution, flavor)
        except ResolutionError as exc:
            if job.fallback is not None and exc.cause in (Cause.UNAVAILABLE, Cause.NOT_FOUND):
                out.values[job.pointer] = job.fallback["uri"]
                out.templates[job.pointer] = job.template.text
                out.resolved[job.pointer] = job.fallback
                out.warnings.append(
                    f"{job.pointer}: kept version {job.fallback['version']} of {job.plan.reference.name!r}: {exc}"
                )
                metrics.RESOLUTIONS.labels("recorded").inc()
            else:
                out.errors.append((exc.cause, f"{job.pointer}: template {job.template.text!r}: {exc}"))
            continue
        if result.warning and result.warning not in warned:
            warned.add(result.warning)
            out.warnings.append(result.warning)
        res = result.resolution
        out.values[job.pointer] = uri
        out.templates[job.pointer] = job.template.text
        out.resolved[job.pointer] = {
            "registry": res.registry,
            "model": res.model,
            "selector": res.selector,
            "version": res.version.version,
            "run_id": res.version.run_id,
            "uri": uri,
        }
        out.n_resolved += 1
    if out.n_resolved:
        metrics.RESOLUTIONS.labels("resolved").inc(out.n_resolved)
