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
from webhook.registry.resolver import Lookup, Plan, ResolutionError, Resolver
from webhook.templating import record_annotations as records
from webhook.templating.causes import Cause
from webhook.templating.grammar import Template, TemplateError, is_candidate, parse
from webhook.templating.spec_fields import interesting_strings
from webhook.templating.template_paths import SELDON_GRAPH_DEPTH, KindPaths, for_kind
from webhook.templating.uris import Flavor

# A refresh token is the reconciler's clock reading of a registry change; one later
# than this past the webhook's clock is not one the reconciler wrote.
REFRESH_SKEW_MS = 5_000
# Denials name each field; past this many, the rest are counted, so a spec of
# thousands of bad fields gets a message of bounded size.
MAX_ERRORS_SHOWN = 20


def show(text: str, limit: int = 120) -> str:
    """A value as quoted in messages: repr, cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


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
        metrics.ADMISSION_OUTCOME["skipped"].observe(time.perf_counter() - started)
        return allowed()
    obj = request["object"]
    malformed = _malformed(obj)
    if malformed is not None:
        metrics.ADMISSION_OUTCOME["denied"].observe(time.perf_counter() - started)
        return denied(Cause.INVALID, f"modelpin cannot admit this object: {malformed}")
    namespace = request.get("namespace")
    if namespace is None:
        found = obj.get("metadata", {}).get("namespace")
        namespace = found if isinstance(found, str) else None
    flavor = Flavor.for_group(request["kind"]["group"], request["kind"]["kind"])
    paths = for_kind(request["kind"]["group"], request["kind"]["kind"])
    outcome = await decide(obj, namespace=namespace, flavor=flavor, resolver=resolver, paths=paths)
    if outcome.errors:
        shown = outcome.errors[:MAX_ERRORS_SHOWN]
        detail = "; ".join(message for _, message in shown)
        if len(outcome.errors) > len(shown):
            detail += f"; and {len(outcome.errors) - len(shown)} more"
        noun = "template" if len(outcome.errors) == 1 else "templates"
        message = f"modelpin could not resolve {len(outcome.errors)} {noun}: {detail}"
        metrics.ADMISSION_OUTCOME["denied"].observe(time.perf_counter() - started)
        return denied(outcome.errors[0][0], message, outcome.warnings)
    ops = build_patch(obj, outcome.values, outcome.templates, outcome.resolved, outcome.current)
    metrics.ADMISSION_OUTCOME["patched" if ops else "unchanged"].observe(time.perf_counter() - started)
    return patched(ops, outcome.warnings)


def _malformed(obj: Mapping[str, Any]) -> str | None:
    """Why modelpin cannot patch ``obj`` as sent (its metadata is where the records go), if so."""
    if "metadata" in obj:
        metadata = obj["metadata"]
        if not isinstance(metadata, dict):
            return f"metadata is {_json_type(metadata)}, not an object"
        for name in ("labels", "annotations"):
            if name in metadata and metadata[name] is not None and not isinstance(metadata[name], dict):
                return f"metadata.{name} is {_json_type(metadata[name])}, not an object"
    spec = obj.get("spec")
    if isinstance(spec, str) and is_candidate(spec):
        return f"spec is the string {show(spec)}, not an object; a template is the value of a field under spec"
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _survey(
    obj: Mapping[str, Any], paths: KindPaths | None = None
) -> tuple[records.Records, list[tuple[str, str, bool]]]:
    """An object's records, and the spec strings admission acts on: candidates and recorded URIs."""
    metadata = obj.get("metadata")
    rec = records.read(metadata if isinstance(metadata, dict) else {})
    recorded = {entry["uri"] for ptr, entry in rec.resolved.items() if ptr in rec.templates}
    return rec, interesting_strings(dict(obj), recorded, None if paths is None else paths.trie)


async def decide(
    obj: Mapping[str, Any],
    *,
    namespace: str | None,
    flavor: Flavor,
    resolver: Resolver,
    paths: KindPaths | None = None,
) -> Outcome:
    """What admission decides for ``obj``: new field values and records, or errors.

    With ``paths`` (a kind ``template_paths`` declares), templates are resolved only
    on its declared fields; one anywhere else is refused, naming the field.
    """
    rec, found = _survey(obj, paths)
    out = Outcome(warnings=list(rec.problems))
    jobs: list[_Job] = []
    for pointer, value, declared in found:
        candidate = is_candidate(value)
        if not declared:
            if candidate:
                out.errors.append((Cause.INVALID, _unguarded(pointer, value, paths)))
                metrics.RESOLUTION_RESULT["invalid"].inc()
            continue  # a recorded URI off the declared fields: its record is dropped
        out.current[pointer] = value
        if candidate:
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
        await _run(jobs, _not_before(rec.refresh_ms, resolver, out), flavor, resolver, out)
    return out


def _unguarded(pointer: str, value: str, paths: KindPaths | None) -> str:
    kind = paths.kind if paths is not None else "this kind"
    return (
        f"{pointer}: template {show(value)} is not in a field where modelpin resolves templates for {kind} "
        f"(model URIs and env values, Seldon graphs to {SELDON_GRAPH_DEPTH} levels of children: "
        "the fields its guard checks when the webhook is down)"
    )


def _not_before(refresh_ms: int, resolver: Resolver, out: Outcome) -> int:
    """The refresh token; one the reconciler cannot have written (past now plus the skew) is treated as now.

    "Now" here is the skew's width back: a token of exactly now would still make every
    admission miss an entry fetched a moment earlier, so a forged token could keep every
    admission off the cache; this way it costs at most one lookup per reference per skew.
    """
    now = resolver.clock_ms()
    if refresh_ms > now + REFRESH_SKEW_MS:
        out.warnings.append(f"{records.REFRESH} is in the future; treated as now")
        return now - REFRESH_SKEW_MS
    return refresh_ms


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
                f"{pointer}: template {show(text)} does not parse: {exc.reason} at column {exc.column}",
            )
        )
        metrics.RESOLUTION_RESULT["invalid"].inc()
        return None
    same_text = rec.templates.get(pointer) == text and pointer in rec.resolved
    if rec.paused and same_text:
        _keep(pointer, rec, out)
        metrics.RESOLUTION_RESULT["paused"].inc()
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
        metrics.RESOLUTION_RESULT["paused"].inc()
        return None
    try:
        template = parse(text)
    except TemplateError:
        # Our own record is damaged; the field keeps the user's literal.
        out.warnings.append(f"{pointer}: dropped a recorded template that no longer parses: {show(text)}")
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
        out.errors.append((exc.cause, f"{pointer}: template {show(template.text)}: {exc}"))
        if exc.cause is Cause.POLICY:
            metrics.RESOLUTION_RESULT["policy"].inc()
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
        metrics.CACHE_RESULT["hit"].inc(len(by_key))
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
                metrics.RESOLUTION_RESULT["recorded"].inc()
            else:
                out.errors.append((exc.cause, f"{job.pointer}: template {show(job.template.text)}: {exc}"))
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
        metrics.RESOLUTION_RESULT["resolved"].inc(out.n_resolved)
