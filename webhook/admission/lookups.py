"""A review's lookups, made once through the resolver's door, and what each field takes from them.

A field takes its answer unless the namespace's gates or the servability check refuse it;
a field with a trusted record keeps that record when the registry cannot answer or a gate refuses.
"""

from __future__ import annotations

from collections.abc import Mapping

from webhook.admission import gates
from webhook.admission.jobs import Job
from webhook.admission.outcome import Outcome, show
from webhook.registry import servable
from webhook.registry.resolver import Resolution, ResolutionError, Resolver
from webhook.templating import record_annotations as records
from webhook.templating.causes import Cause
from webhook.templating.uris import Flavor


async def run_lookups(
    jobs: list[Job],
    refresh_ms: int,
    deadline: float,
    flavor: Flavor,
    resolver: Resolver,
    out: Outcome,
    gate: tuple[str | None, Mapping[str, str] | None] = (None, None),
    check: servable.Check | None = None,
) -> None:
    by_key = await resolver.resolve_many((job.plan for job in jobs), not_before_ms=refresh_ms, deadline=deadline)
    warned: set[str] = set()
    for job in jobs:
        result = by_key[job.plan.key]
        if isinstance(result, ResolutionError):
            _unresolved(job, result, out)  # shared by every field naming the reference: not raised again
            continue
        try:
            uri = resolver.uri(job.plan, result.resolution, flavor)
        except ResolutionError as exc:
            _unresolved(job, exc, out)
            continue
        if result.warning and result.warning not in warned:
            warned.add(result.warning)
            out.warnings.append(result.warning)
        res = result.resolution
        namespace, required = gate
        lacking = gates.missing(required, res.version.tags) if required else []
        if lacking:
            refusal = gates.refusal(namespace, res.model, res.version.version, res.version.tags, lacking)
            _gated(job, refusal, out)
            continue
        if check is not None and not _servable(job, res, check(job.pointer, res), out):
            continue
        out.values[job.pointer] = uri
        out.templates[job.pointer] = job.template.text
        entry = {
            "registry": res.registry,
            "model": res.model,
            "selector": res.selector if job.selector is None else job.selector,
            "version": res.version.version,
            "run_id": res.version.run_id,
            "uri": uri,
        }
        model_id = res.version.model_id
        if model_id and model_id != res.version.version:
            entry[records.MODEL_ID] = model_id  # a registered version's logged model (MLflow 3)
        out.resolved[job.pointer] = entry
        out.how[job.pointer] = job.how
        out.results["resolved"] += 1


def _unresolved(job: Job, exc: ResolutionError, out: Outcome) -> None:
    """A field the registry could not answer for: its trusted record stands in, if the registry is the cause."""
    if job.fallback is not None and exc.cause in (Cause.UNAVAILABLE, Cause.NOT_FOUND):
        _keep_recorded(job, job.fallback, str(exc), out)
    else:
        out.errors.append((exc.cause, f"{job.pointer}: template {show(job.template.text)}: {exc}"))


def _servable(job: Job, res: Resolution, verdict: servable.FieldVerdict, out: Outcome) -> bool:
    """Whether the field takes ``res`` by its server's flavor; a field already at that version is only warned."""
    if verdict.refusal is None:
        if verdict.warning is not None:
            out.warnings.append(verdict.warning)
        return True
    if job.fallback is not None and job.fallback.get("version") == res.version.version:
        # already running it: refusing would block every later edit of the object, not the model
        out.warnings.append(f"{job.pointer}: {verdict.refusal}")
        return True
    out.errors.append((Cause.INVALID, f"{job.pointer}: template {show(job.template.text)}: {verdict.refusal}"))
    out.results["invalid"] += 1
    return False


def _gated(job: Job, refusal: str, out: Outcome) -> None:
    """A version the namespace's gate refuses: a field with a trusted record keeps it, any other is denied."""
    if job.fallback is None:
        out.errors.append((Cause.POLICY, f"{job.pointer}: template {show(job.template.text)}: {refusal}"))
        out.results["policy"] += 1
        return
    _keep_recorded(job, job.fallback, refusal, out)


def _keep_recorded(job: Job, record: dict[str, str], why: str, out: Outcome) -> None:
    """The field keeps its trusted record instead of the registry's answer, with a warning saying why."""
    out.values[job.pointer] = record["uri"]
    out.templates[job.pointer] = job.template.text
    out.resolved[job.pointer] = record
    out.warnings.append(f"{job.pointer}: kept version {record['version']} of {job.plan.reference.name!r}: {why}")
    out.results["recorded"] += 1
