"""The admission core: a validated AdmissionReview request in, a response out.

No HTTP here. Dependencies (the resolver and a clock) are passed in so the
same function serves the webhook, ``modelpin render`` and the tests.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook import metrics
from webhook.admission import gates, history, holds, traffic
from webhook.admission.holds import Holding
from webhook.admission.patch import annotations_after, annotations_size, build_patch
from webhook.admission.reconciler_guard import MAX_SHOWN, changes_outside_templates
from webhook.admission.review import AdmissionRequest, Op, Response, allowed, denied, patched
from webhook.config import Settings
from webhook.registry import servable
from webhook.registry.resolver import Plan, Resolution, ResolutionError, Resolver
from webhook.templating import record_annotations as records
from webhook.templating.causes import Cause
from webhook.templating.grammar import Reference, Selector, SelectorKind, Template, TemplateError, is_candidate, parse
from webhook.templating.rollout_annotations import HISTORY, HOLD
from webhook.templating.rollout_policy import ROLLOUT
from webhook.templating.spec_fields import interesting_strings
from webhook.templating.template_paths import SELDON_GRAPH_DEPTH, KindPaths, for_kind
from webhook.templating.uris import Flavor

# A refresh token is the reconciler's clock reading of a registry change; one later
# than this past the webhook's clock is not one the reconciler wrote.
REFRESH_SKEW_MS = 5_000
# Denials name each field; past this many, the rest are counted, so a spec of
# thousands of bad fields gets a message of bounded size.
MAX_ERRORS_SHOWN = 20
# The apiserver's limit on the total size of metadata.annotations (keys and values, bytes).
ANNOTATIONS_LIMIT_BYTES = 256 * 1024


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
    # the selector recorded (a hold's version is looked up, the template's selector recorded)
    selector: str | None = None
    how: str = history.RESOLVED


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
    # annotations to set besides the records (None: removed)
    annotations: dict[str, str | None] = field(default_factory=dict)
    # a reason to refuse the object as a whole, before any field is resolved
    refusal: tuple[Cause, str] | None = None
    # pointer -> how its resolution came about (history.RESOLVED, PINNED, KEPT)
    how: dict[str, str] = field(default_factory=dict)
    # the whole spec wanted, when a rollout's traffic split is written or removed (else None)
    spec: dict[str, Any] | None = None


async def admit(request: AdmissionRequest, *, resolver: Resolver, settings: Settings | None = None) -> Response:
    """The answer to ``request`` (without its uid: the edge stamps it, and records the outcome).

    ``settings`` are those the resolver was built with unless given.
    """
    if settings is None:
        settings = resolver.settings
    if request["operation"] not in ("CREATE", "UPDATE"):
        return allowed()
    obj = request["object"]
    malformed = _malformed(obj)
    if malformed is not None:
        return denied(Cause.INVALID, f"modelpin cannot admit this object: {malformed}")
    namespace = request.get("namespace")
    if namespace is None:
        found = obj.get("metadata", {}).get("namespace")
        namespace = found if isinstance(found, str) else None
    flavor = Flavor.for_group(request["kind"]["group"], request["kind"]["kind"])
    paths = for_kind(request["kind"]["group"], request["kind"]["kind"])
    old = request.get("oldObject") if request["operation"] == "UPDATE" else None
    username = request.get("userInfo", {}).get("username")
    by_reconciler = username is not None and username in settings.reconciler_usernames
    if by_reconciler and request["operation"] == "UPDATE":
        changed = changes_outside_templates(old, obj, paths)
        if changed:
            return denied(Cause.POLICY, _reconciler_overreach(str(username), changed))
    outcome = await decide(
        obj,
        namespace=namespace,
        flavor=flavor,
        resolver=resolver,
        settings=settings,
        paths=paths,
        old=old,
        may_refresh=by_reconciler,
        kind=request["kind"]["kind"],
    )
    if outcome.refusal is not None:
        return denied(*outcome.refusal, outcome.warnings)
    if outcome.errors:
        shown = outcome.errors[:MAX_ERRORS_SHOWN]
        detail = "; ".join(message for _, message in shown)
        if len(outcome.errors) > len(shown):
            detail += f"; and {len(outcome.errors) - len(shown)} more"
        noun = "template" if len(outcome.errors) == 1 else "templates"
        message = f"modelpin could not resolve {len(outcome.errors)} {noun}: {detail}"
        return denied(outcome.errors[0][0], message, outcome.warnings)
    ops = build_patch(
        obj, outcome.values, outcome.templates, outcome.resolved, outcome.current, outcome.annotations, outcome.spec
    )
    oversize = _oversize(obj, ops)
    if oversize is not None:
        return denied(Cause.INVALID, oversize, outcome.warnings)
    return patched(ops, outcome.warnings)


def _reconciler_overreach(username: str, changed: list[str]) -> str:
    shown = ", ".join(changed[:MAX_SHOWN])
    more = f" and {len(changed) - MAX_SHOWN} more" if len(changed) > MAX_SHOWN else ""
    return f"{username} may change only the template fields of spec; changed: {shown}{more}"


def _oversize(obj: Mapping[str, Any], ops: list[Op]) -> str | None:
    """Why the apiserver would refuse the patched object's annotations, if it would.

    Said here, because the apiserver's own refusal of a patched object does not say
    that the patch made it too large.
    """
    if not any(op["path"].startswith("/metadata/annotations") or op["path"] == "/metadata" for op in ops):
        return None
    size = annotations_size(annotations_after(obj, ops))
    if size <= ANNOTATIONS_LIMIT_BYTES:
        return None
    return (
        f"modelpin cannot admit this object: modelpin's records would make metadata.annotations {size} bytes, "
        f"over the apiserver's {ANNOTATIONS_LIMIT_BYTES}-byte limit; split the object or use fewer templates"
    )


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


def _records_of(obj: Mapping[str, Any]) -> records.Records:
    metadata = obj.get("metadata")
    return records.read(metadata if isinstance(metadata, dict) else {})


def _raw_refresh(obj: Mapping[str, Any] | None) -> object:
    """The refresh annotation's value as sent, whatever its type; None when absent."""
    metadata = obj.get("metadata") if obj is not None else None
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    return annotations.get(records.REFRESH) if isinstance(annotations, dict) else None


def _survey(
    obj: Mapping[str, Any], paths: KindPaths | None = None
) -> tuple[records.Records, list[tuple[str, str, bool]]]:
    """An object's records, and the spec strings admission acts on: candidates and recorded URIs."""
    rec = _records_of(obj)
    recorded = {entry["uri"] for ptr, entry in rec.resolved.items() if ptr in rec.templates}
    return rec, interesting_strings(dict(obj), recorded, None if paths is None else paths.trie)


async def decide(
    obj: Mapping[str, Any],
    *,
    namespace: str | None,
    flavor: Flavor,
    resolver: Resolver,
    settings: Settings | None = None,
    paths: KindPaths | None = None,
    old: Mapping[str, Any] | None = None,
    may_refresh: bool = True,
    kind: str | None = None,
) -> Outcome:
    """What admission decides for ``obj``: new field values and records, or errors.

    With ``paths`` (a kind ``template_paths`` declares), templates are resolved only
    on its declared fields; one anywhere else is refused, naming the field.

    ``old`` is the object as stored (UPDATE; None on CREATE). Only a record it holds
    too is trusted to stand in for the registry (paused, or the registry unable to
    answer): records on the object as sent are the sender's to write. Without
    ``may_refresh``, a changed refresh token is set back to ``old``'s.

    A hold (or pause) on the object as sent keeps each field's trusted record, or
    moves it to the version the hold names. A namespace's ``require_tags`` gate
    refuses a fresh resolution to a version without them; a field with a trusted
    record keeps it instead. Each changed resolution is appended to the history.

    With ``kind``, a rollout's traffic split (traffic.py) is written: any split on the
    object as sent is stripped before its fields are read, the fields of the state's
    ``from`` records keep those records, and the canary side takes the ``to`` URIs.
    """
    if settings is None:
        settings = resolver.settings
    sent_spec = obj.get("spec")
    if kind is not None and isinstance(sent_spec, dict) and traffic.has_split(kind, sent_spec):
        obj = {**obj, "spec": traffic.strip(kind, sent_spec)}  # a split is not the user's literals
    rec, found = _survey(obj, paths)
    out = Outcome(warnings=list(rec.problems))
    old_rec = _records_of(old) if old is not None else None
    now_ms = resolver.clock_ms()
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    holding = holds.read(obj, now)
    if holding.problem is not None:
        out.warnings.append(holding.problem)
    rollout = _rollout(obj, old, may_refresh, holding, namespace, settings, out) if kind is not None else None
    pins = rollout.state.from_ if rollout is not None and rollout.state is not None else {}
    pinned: list[str] = []
    refresh_ms = rec.refresh_ms
    if not may_refresh:
        refresh_ms = _refused_refresh(obj, old, old_rec, out, settings)
    jobs: list[_Job] = []
    for pointer, value, declared in found:
        candidate = is_candidate(value)
        if not declared:
            if candidate:
                out.errors.append((Cause.INVALID, _unguarded(pointer, value, paths)))
                metrics.RESOLUTION_RESULT["invalid"].inc()
            continue  # a recorded URI off the declared fields: its record is dropped
        out.current[pointer] = value
        if pointer in pins and _rollout_pin(pointer, value, rec, pins[pointer], namespace, resolver, out):
            pinned.append(pointer)
            continue
        trusted = _trusted(pointer, rec, old_rec)
        if candidate:
            job = _template_job(pointer, value, rec, trusted, holding, namespace, resolver, out)
        elif rec.recorded_uri(pointer) == value:
            job = _recorded_job(pointer, rec, trusted, holding, namespace, resolver, out)
        else:
            # A literal the user wrote, or a field that never held a template:
            # any record for it is dropped by not carrying it over.
            continue
        if job is not None:
            jobs.append(job)
    references = len({job.plan.key for job in jobs})
    limit = settings.max_references_per_review
    if references > limit:
        out.refusal = (
            Cause.INVALID,
            f"modelpin cannot admit this object: it names {references} distinct registry references, over the "
            f"limit of {limit} per object (setting max_references_per_review)",
        )
        return out
    if jobs:
        policy = settings.policy(namespace)
        check = servable.checker(resolver, servable.mode(settings, namespace), obj)
        deadline = time.monotonic() + settings.lookup_deadline_seconds
        not_before = _not_before(refresh_ms, now_ms, out)
        await _run(jobs, not_before, deadline, flavor, resolver, out, (namespace, policy.require_tags), check)
    if not out.errors:
        _record_history(obj, old, old_rec, holding, now, out)
        if kind is not None and isinstance(sent_spec, dict):
            _split(kind, sent_spec, obj["spec"], rollout, pinned, out)
    return out


def _rollout(
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    may_refresh: bool,
    holding: Holding,
    namespace: str | None,
    settings: Settings,
    out: Outcome,
) -> traffic.Rollout | None:
    """The rollout in force; None when there is none to split (a hold wins over a rollout)."""
    writers = ", ".join(settings.reconciler_usernames) or "no one"
    default = settings.policy(namespace).rollout
    rollout = traffic.read(obj, old, trusted=may_refresh, default=default, writers=writers)
    out.warnings += rollout.warnings
    if rollout.set_back is not None:
        out.annotations[ROLLOUT] = rollout.set_back[0]
    if rollout.state is None or not rollout.state.splitting:
        return None
    if holding.active:
        out.warnings.append(f"the rollout's traffic split is not written while {HOLD} or {records.PAUSED} holds")
        return None
    return rollout


def _rollout_pin(
    pointer: str,
    value: str,
    rec: records.Records,
    pin: Mapping[str, str],
    namespace: str | None,
    resolver: Resolver,
    out: Outcome,
) -> bool:
    """Keep a field on its rollout's stable (``from``) record, if it still names that record's model.

    A field whose template now names another model (edited mid-rollout) is resolved as usual
    and left out of the split.
    """
    recorded = rec.templates.get(pointer) if rec.recorded_uri(pointer) == value else None
    text = value if is_candidate(value) else recorded
    if text is None:
        return False  # a literal the user wrote: an override, not part of the rollout
    try:
        p = resolver.plan(parse(text), namespace)
    except (TemplateError, ResolutionError):
        return False  # refused by the ordinary resolution, which says why
    if p.registry != pin.get("registry") or p.reference.name != pin.get("model"):
        out.warnings.append(f"{pointer}: left out of the rollout: its template {show(text)} names another model")
        return False
    out.values[pointer] = pin["uri"]
    out.templates[pointer] = text
    out.resolved[pointer] = dict(pin)
    metrics.RESOLUTION_RESULT["recorded"].inc()
    return True


def _split(
    kind: str,
    sent_spec: Mapping[str, Any],
    stripped: Mapping[str, Any],
    rollout: traffic.Rollout | None,
    pinned: list[str],
    out: Outcome,
) -> None:
    """Set ``out.spec`` when the spec as admitted differs from the one sent by more than field values."""
    state = rollout.state if rollout is not None else None
    if state is not None:
        # only the fields kept on their stable record get a canary side
        state = state.model_copy(update={"to": {p: r for p, r in state.to.items() if p in pinned}})
    if (state is None or not state.to) and stripped is sent_spec:
        return
    resolved = traffic.with_values(stripped, out.values)
    mode = rollout.mode if rollout is not None else "canary"
    result = traffic.split(kind, resolved, state if state is not None and state.to else None, mode)
    if result.problem is not None:
        out.warnings.append(f"the rollout's traffic split is not written: {result.problem}")
    out.spec = result.spec


def _record_history(
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    old_rec: records.Records | None,
    holding: Holding,
    now: dt.datetime,
    out: Outcome,
) -> None:
    text, problems = history.updated(
        obj,
        old,
        old_rec,
        templates=out.templates,
        resolved=out.resolved,
        how=out.how,
        old_holding=holds.read(old, now),
        holding=holding,
        now=now,
    )
    if text is not None:
        out.annotations[HISTORY] = text
        out.warnings += problems


def _trusted(pointer: str, rec: records.Records, old_rec: records.Records | None) -> bool:
    """Whether the object's record for ``pointer`` is one the stored object already had."""
    return (
        old_rec is not None
        and pointer in rec.resolved
        and old_rec.templates.get(pointer) == rec.templates.get(pointer)
        and old_rec.resolved.get(pointer) == rec.resolved[pointer]
    )


def _refused_refresh(
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    old_rec: records.Records | None,
    out: Outcome,
    settings: Settings,
) -> int:
    """The refresh token in force when the sender may not change it: the old object's.

    A token is the reconciler's word that the registry changed; anyone else's token
    would only make admissions skip the cache. A changed one is set back by the patch.
    """
    sent, kept = _raw_refresh(obj), _raw_refresh(old)
    if sent == kept:
        return old_rec.refresh_ms if old_rec is not None else 0
    writers = ", ".join(settings.reconciler_usernames) or "no one"
    if isinstance(kept, str):
        out.annotations[records.REFRESH] = kept
        out.warnings.append(f"{records.REFRESH} is written only by {writers}: set back to {kept!r}")
    else:
        out.annotations[records.REFRESH] = None
        out.warnings.append(f"{records.REFRESH} is written only by {writers}: removed")
    return old_rec.refresh_ms if old_rec is not None else 0


def _unguarded(pointer: str, value: str, paths: KindPaths | None) -> str:
    kind = paths.kind if paths is not None else "this kind"
    return (
        f"{pointer}: template {show(value)} is not in a field where modelpin resolves templates for {kind} "
        f"(model URIs and env values, Seldon graphs to {SELDON_GRAPH_DEPTH} levels of children: "
        "the fields its guard checks when the webhook is down)"
    )


def _not_before(refresh_ms: int, now: int, out: Outcome) -> int:
    """The refresh token; one the reconciler cannot have written (past now plus the skew) is treated as now.

    "Now" here is the skew's width back: a token of exactly now would still make every
    admission miss an entry fetched a moment earlier, so a forged token could keep every
    admission off the cache; this way it costs at most one lookup per reference per skew.
    """
    if refresh_ms > now + REFRESH_SKEW_MS:
        out.warnings.append(f"{records.REFRESH} is in the future; treated as now")
        return now - REFRESH_SKEW_MS
    return refresh_ms


def _template_job(
    pointer: str,
    text: str,
    rec: records.Records,
    trusted: bool,
    holding: Holding,
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
    pin = holding.version_for(pointer)
    if pin is None and holding.active and same_text and _kept(pointer, rec, trusted, holding, out):
        return None
    p = _plan(pointer, template, namespace, resolver, out)
    if p is None:
        return None
    fallback = rec.resolved[pointer] if same_text and trusted else None
    if pin is not None:
        return _pinned_job(pointer, template, p, pin, fallback, out)
    return _Job(pointer, template, p, fallback)


def _recorded_job(
    pointer: str,
    rec: records.Records,
    trusted: bool,
    holding: Holding,
    namespace: str | None,
    resolver: Resolver,
    out: Outcome,
) -> _Job | None:
    text = rec.templates[pointer]
    pin = holding.version_for(pointer)
    if pin is None and holding.active and _kept(pointer, rec, trusted, holding, out):
        return None
    try:
        template = parse(text)
    except TemplateError:
        # Our own record is damaged; the field keeps the user's literal.
        out.warnings.append(f"{pointer}: dropped a recorded template that no longer parses: {show(text)}")
        return None
    p = _plan(pointer, template, namespace, resolver, out)
    if p is None:
        return None
    fallback = rec.resolved[pointer] if trusted else None
    if pin is not None:
        return _pinned_job(pointer, template, p, pin, fallback, out)
    return _Job(pointer, template, p, fallback)


def _pinned_job(
    pointer: str, template: Template, p: Plan, pin: str, fallback: dict[str, str] | None, out: Outcome
) -> _Job | None:
    """The lookup of the version a hold names for the field, with the template's registry and profile."""
    problem = holds.bad_version(pin)
    if problem is not None:
        out.errors.append((Cause.INVALID, f"{pointer}: template {show(template.text)}: {problem}"))
        metrics.RESOLUTION_RESULT["invalid"].inc()
        return None
    if fallback is not None and fallback.get("version") == pin:
        # already at the held version: kept without a lookup, so a held object re-admits unchanged
        out.values[pointer] = fallback["uri"]
        out.templates[pointer] = template.text
        out.resolved[pointer] = fallback
        metrics.RESOLUTION_RESULT["paused"].inc()
        return None
    held = Plan(p.registry, p.profile, Reference(p.reference.name, Selector(SelectorKind.VERSION, pin)))
    return _Job(pointer, template, held, fallback, selector=str(p.reference.selector), how=history.PINNED)


def _kept(pointer: str, rec: records.Records, trusted: bool, holding: Holding, out: Outcome) -> bool:
    """Keep a held field's recorded resolution, if the stored object has that record too."""
    if not trusted:
        marker = records.PAUSED if holding.paused else HOLD
        out.warnings.append(
            f"{pointer}: resolved although {marker} is set: only a record the stored object "
            "already holds is kept, and this one it does not"
        )
        return False
    _keep(pointer, rec, out)
    out.how[pointer] = history.KEPT
    metrics.RESOLUTION_RESULT["paused"].inc()
    return True


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


async def _run(
    jobs: list[_Job],
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
        out.n_resolved += 1
    if out.n_resolved:
        metrics.RESOLUTION_RESULT["resolved"].inc(out.n_resolved)


def _unresolved(job: _Job, exc: ResolutionError, out: Outcome) -> None:
    """A field the registry could not answer for: its trusted record stands in, if the registry is the cause."""
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


def _servable(job: _Job, res: Resolution, verdict: servable.FieldVerdict, out: Outcome) -> bool:
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
    metrics.RESOLUTION_RESULT["invalid"].inc()
    return False


def _gated(job: _Job, refusal: str, out: Outcome) -> None:
    """A version the namespace's gate refuses: a field with a trusted record keeps it, any other is denied."""
    if job.fallback is None:
        out.errors.append((Cause.POLICY, f"{job.pointer}: template {show(job.template.text)}: {refusal}"))
        metrics.RESOLUTION_RESULT["policy"].inc()
        return
    out.values[job.pointer] = job.fallback["uri"]
    out.templates[job.pointer] = job.template.text
    out.resolved[job.pointer] = job.fallback
    out.warnings.append(
        f"{job.pointer}: kept version {job.fallback['version']} of {job.plan.reference.name!r}: {refusal}"
    )
    metrics.RESOLUTION_RESULT["recorded"].inc()
