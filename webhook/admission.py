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

from webhook import memo, metrics, records
from webhook.discovery import interesting_strings
from webhook.patches import build_patch
from webhook.profiles import Flavor
from webhook.resolver import Cause, Lookup, Plan, Resolution, ResolutionError, Resolver
from webhook.reviews import Response, allowed, allowed_around_uid, denied, encode_patch
from webhook.templates import Template, TemplateError, is_candidate, parse

_CODES = {Cause.INVALID: 422, Cause.NOT_FOUND: 404, Cause.POLICY: 403, Cause.UNAVAILABLE: 503}


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
    # the cache entries the values came from, one per distinct reference
    uses: dict[tuple[str, str, str], tuple[Plan, Resolution]] = field(default_factory=dict)
    # fields resolved and fields kept paused, as counted in the metrics
    n_resolved: int = 0
    n_paused: int = 0


def replay(review_key: memo.ReviewKey, *, resolver: Resolver, decisions: memo.DecisionMemo) -> bytes | None:
    """The rendered answer to a review remembered by its bytes (``memo.review_key``), if still valid."""
    started = time.perf_counter()
    seen = decisions.get(review_key.key, resolver)
    if seen is None:
        return None
    _count(seen, metrics.MEMO_REVIEW, started)
    return memo.answer(seen, review_key.uid)


async def admit(
    request: Mapping[str, Any],
    *,
    resolver: Resolver,
    decisions: memo.DecisionMemo | None = None,
    review_key: memo.ReviewKey | None = None,
) -> Response:
    """The answer to ``request``; ``review_key`` is its body's, to remember the decision by as well."""
    started = time.perf_counter()
    uid = str(request["uid"])
    if request["operation"] not in ("CREATE", "UPDATE"):
        metrics.ADMISSION_SKIPPED.observe(time.perf_counter() - started)
        return allowed(uid)
    obj: dict[str, Any] = request["object"]
    metadata = obj.get("metadata") or {}
    namespace = request.get("namespace") or metadata.get("namespace")
    flavor = Flavor.for_group(str(request["kind"].get("group", "")))
    memo_key = fields_key = None
    if decisions is not None:
        memo_key = memo.key(obj, namespace, flavor)
        seen = None if memo_key is None else decisions.get(memo_key, resolver)
        if seen is not None:
            # A repeated spec: its review is likely to come again byte for byte.
            _remember_body(decisions, review_key, uid, seen)
            return _remembered(uid, seen, metrics.MEMO_HIT, started)
    surveyed = survey(obj)
    if decisions is not None:
        fields_key = memo.fields_key(surveyed.found, obj, namespace, flavor)
        seen = None if fields_key is None else decisions.get(fields_key, resolver)
        if seen is not None:
            # An edited spec: its body is not remembered, or a stream of edits would crowd the memo.
            return _remembered(uid, seen, metrics.MEMO_FIELDS, started)
        metrics.MEMO_MISS.inc()
    outcome = await decide(obj, namespace=namespace, flavor=flavor, resolver=resolver, surveyed=surveyed)
    if outcome.errors:
        code = _CODES[outcome.errors[0][0]]
        detail = "; ".join(message for _, message in outcome.errors)
        noun = "template" if len(outcome.errors) == 1 else "templates"
        message = f"modelpin could not resolve {len(outcome.errors)} {noun}: {detail}"
        metrics.ADMISSION_DENIED.observe(time.perf_counter() - started)
        return denied(uid, code, message, outcome.warnings)
    ops = build_patch(obj, outcome.values, outcome.templates, outcome.resolved, outcome.current)
    patch = encode_patch(ops) if ops else None
    if decisions is not None and not outcome.warnings:
        uses = tuple(outcome.uses.values())
        decision = memo.Decision(
            patch=patch,
            uses=uses,
            refresh_ms=surveyed.records.refresh_ms,
            renew_at_ms=resolver.renew_at_ms(uses),
            resolved=outcome.n_resolved,
            paused=outcome.n_paused,
            patched=bool(ops),
            answer=allowed_around_uid(patch),
        )
        for k in (memo_key, fields_key):
            if k is not None:
                decisions.put(k, decision)
        _remember_body(decisions, review_key, uid, decision)
    (metrics.ADMISSION_PATCHED if ops else metrics.ADMISSION_UNCHANGED).observe(time.perf_counter() - started)
    return allowed(uid, patch, outcome.warnings)


@dataclass(slots=True)
class Survey:
    """Everything of an object admission reads: its records and the spec strings that matter."""

    records: records.Records
    found: list[tuple[str, str]]  # (pointer, value): candidates and recorded URIs, in document order


def survey(obj: Mapping[str, Any]) -> Survey:
    rec = records.read(obj.get("metadata") or {})
    recorded = {entry["uri"] for ptr, entry in rec.resolved.items() if ptr in rec.templates}
    return Survey(rec, interesting_strings(dict(obj), recorded))


def _remember_body(
    decisions: memo.DecisionMemo, review_key: memo.ReviewKey | None, uid: str, decision: memo.Decision
) -> None:
    """So that the same review again, but for its uid, is answered before it is parsed."""
    if review_key is not None and review_key.cuts_request_uid(uid):
        decisions.put(review_key.key, decision)


def _remembered(uid: str, seen: memo.Decision, counter: metrics.LoopCount, started: float) -> Response:
    _count(seen, counter, started)
    return allowed(uid, seen.patch)


def _count(seen: memo.Decision, counter: metrics.LoopCount, started: float) -> None:
    """The metrics of a remembered answer: what the full decision would have counted."""
    counter.inc()
    if seen.resolved:
        metrics.RESOLVED.inc(seen.resolved)
    if seen.paused:
        metrics.PAUSED.inc(seen.paused)
    (metrics.ADMISSION_PATCHED if seen.patched else metrics.ADMISSION_UNCHANGED).observe(time.perf_counter() - started)


async def decide(
    obj: Mapping[str, Any],
    *,
    namespace: str | None,
    flavor: Flavor,
    resolver: Resolver,
    surveyed: Survey | None = None,
) -> Outcome:
    """The decision for ``obj``; ``surveyed`` is its ``survey``, when the caller has it already."""
    surveyed = surveyed or survey(obj)
    rec = surveyed.records
    out = Outcome(warnings=list(rec.problems))
    jobs: list[_Job] = []
    for pointer, value in surveyed.found:
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
        metrics.INVALID.inc()
        return None
    same_text = rec.templates.get(pointer) == text and pointer in rec.resolved
    if rec.paused and same_text:
        _keep(pointer, rec, out)
        out.n_paused += 1
        metrics.PAUSED.inc()
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
        out.n_paused += 1
        metrics.PAUSED.inc()
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
            metrics.POLICY.inc()
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
        metrics.CACHE_HIT.inc(len(by_key))
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
                metrics.RECORDED.inc()
            else:
                out.errors.append((exc.cause, f"{job.pointer}: template {job.template.text!r}: {exc}"))
            continue
        if result.warning and result.warning not in warned:
            warned.add(result.warning)
            out.warnings.append(result.warning)
        res = result.resolution
        out.uses.setdefault(job.plan.key, (job.plan, res))
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
        metrics.RESOLVED.inc(out.n_resolved)
