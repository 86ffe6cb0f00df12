"""The admission core: a validated AdmissionReview request in, a response out.

No HTTP here, and no metrics: dependencies (the resolver, its clock, the settings)
are passed in, and the fields' resolution results are handed back for the caller
to count, so the same function serves the webhook, ``modelpin render`` and the tests.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.admission import history, holds, traffic
from webhook.admission.holds import Holding
from webhook.admission.jobs import Fields, Job, is_trusted, recorded_job, template_job
from webhook.admission.lookups import run_lookups
from webhook.admission.outcome import Outcome, show, writers
from webhook.admission.patch import annotations_after, annotations_size, build_patch
from webhook.admission.reconciler_guard import MAX_SHOWN, changes_outside_templates
from webhook.admission.review import AdmissionRequest, Op, Response, allowed, denied, patched
from webhook.admission.rollout_fields import pin_to_stable, rollout_in_force, write_split
from webhook.config import Settings
from webhook.registry import servable
from webhook.registry.resolver import Resolver
from webhook.templating import record_annotations as records
from webhook.templating.causes import Cause
from webhook.templating.grammar import is_candidate
from webhook.templating.rollout_annotations import HISTORY
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


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to a review, and how many of its fields came to each resolution result."""

    response: Response
    results: Counter[str]


async def admit(request: AdmissionRequest, *, resolver: Resolver, settings: Settings) -> Admission:
    """The answer to ``request`` (without its uid: the edge stamps it, and records the outcome and results)."""
    if request["operation"] not in ("CREATE", "UPDATE"):
        return Admission(allowed(), Counter())
    obj = request["object"]
    malformed = _malformed(obj)
    if malformed is not None:
        return Admission(denied(Cause.INVALID, f"modelpin cannot admit this object: {malformed}"), Counter())
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
            return Admission(denied(Cause.POLICY, _reconciler_overreach(str(username), changed)), Counter())
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
    return Admission(_response(obj, outcome), outcome.results)


def _response(obj: Mapping[str, Any], outcome: Outcome) -> Response:
    """What ``outcome`` answers for ``obj``: its refusal, its errors, or its patch."""
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
    return records.annotations_of(obj).get(records.REFRESH)


def _marked(obj: Mapping[str, Any] | None) -> bool:
    """Whether ``obj`` carries any ``modelpin.io/`` annotation: without one there is no record,
    hold or rollout to read, and admission skips reading them (most objects on CREATE)."""
    return any(key.startswith(records.PREFIX) for key in records.annotations_of(obj))


def _survey(
    obj: Mapping[str, Any], paths: KindPaths | None, marked: bool
) -> tuple[records.Records, list[tuple[str, str, bool]]]:
    """An object's records, and the spec strings admission acts on: candidates and recorded URIs."""
    rec = _records_of(obj) if marked else records.Records()
    recorded = {entry["uri"] for ptr, entry in rec.resolved.items() if ptr in rec.templates}
    return rec, interesting_strings(obj, recorded, None if paths is None else paths.trie)


async def decide(
    obj: Mapping[str, Any],
    *,
    namespace: str | None,
    flavor: Flavor,
    resolver: Resolver,
    settings: Settings,
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
    sent_spec = obj.get("spec")
    if kind is not None and isinstance(sent_spec, dict) and traffic.has_split(kind, sent_spec):
        obj = {**obj, "spec": traffic.strip(kind, sent_spec)}  # a split is not the user's literals
    marked = _marked(obj)
    rec, found = _survey(obj, paths, marked)
    out = Outcome(warnings=list(rec.problems))
    old_rec = _records_of(old) if old is not None else None
    now_ms = resolver.clock_ms()
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    holding = holds.read(obj, now) if marked else holds.NOT_HELD
    if holding.problem is not None:
        out.warnings.append(holding.problem)
    # a rollout is read from annotations alone: the sent object's, or the stored one's a sender removed
    reads_rollout = kind is not None and (marked or _marked(old))
    rollout = rollout_in_force(obj, old, may_refresh, holding, namespace, settings, out) if reads_rollout else None
    pins = rollout.state.from_ if rollout is not None and rollout.state is not None else {}
    pinned: list[str] = []
    refresh_ms = rec.refresh_ms
    if not may_refresh:
        refresh_ms = _refused_refresh(obj, old, old_rec, out, settings)
    jobs: list[Job] = []
    ctx = Fields(rec, holding, namespace, resolver, out)
    for pointer, value, declared in found:
        candidate = is_candidate(value)
        if not declared:
            if candidate:
                out.errors.append((Cause.INVALID, _unguarded(pointer, value, paths)))
                out.results["invalid"] += 1
            continue  # a recorded URI off the declared fields: its record is dropped
        out.current[pointer] = value
        if pointer in pins and pin_to_stable(pointer, value, rec, pins[pointer], namespace, resolver, out):
            pinned.append(pointer)
            continue
        trusted = is_trusted(pointer, rec, old_rec)
        if candidate:
            job = template_job(pointer, value, trusted, ctx)
        elif rec.recorded_uri(pointer) == value:
            job = recorded_job(pointer, trusted, ctx)
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
        await run_lookups(jobs, not_before, deadline, flavor, resolver, out, (namespace, policy.require_tags), check)
    if not out.errors:
        _record_history(obj, old, old_rec, holding, now, out)
        if kind is not None and isinstance(sent_spec, dict):
            write_split(kind, sent_spec, obj["spec"], rollout, pinned, out)
    return out


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
    by = writers(settings.reconciler_usernames)
    if isinstance(kept, str):
        out.annotations[records.REFRESH] = kept
        out.warnings.append(f"{records.REFRESH} is written only by {by}: set back to {kept!r}")
    else:
        out.annotations[records.REFRESH] = None
        out.warnings.append(f"{records.REFRESH} is written only by {by}: removed")
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
