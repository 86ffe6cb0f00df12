"""How the webhook writes a rollout's traffic split into a spec (pure).

The webhook stays the only writer of ``spec``: the reconciler writes the state
(``modelpin.io/rollout``), and on every admission the split is derived again
from the object as sent, the state and the records. So that a re-apply from git
and the webhook's own output give the same spec, admission runs in this order:

1. ``strip``: remove whatever an earlier split added (each piece carries the
   annotation ``modelpin.io/canary``, so it is found in the object as sent,
   whatever the state says now);
2. resolve the template fields as usual, with the rollout's ``from`` versions
   pinned on the stable side;
3. ``split``: add the canary side for the state's ``to`` records.

Per platform:
- KServe InferenceService, mode ``canary`` (default): a ``spec.canary[]`` entry
  ``{predictor: <copy of spec.predictor with the new URIs>, trafficPercent}``.
  Both versions are named in the object itself, so the split is a function of
  the object and works whatever KServe's deployment mode.
- KServe, mode ``canary-traffic-percent``: ``spec.predictor`` takes the new
  URIs and ``canaryTrafficPercent``; Knative keeps the previous revision for the
  rest. Serverless mode only, and the old side is whatever revision Knative
  last rolled out, not something the object says.
- SeldonDeployment: a copy of the stable predictor named ``<name>-canary``
  with the new URIs carries the canary share of ``spec.predictors[].traffic``;
  the stable one keeps the rest.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from webhook.admission.outcome import writers as written_by
from webhook.templating.record_annotations import PREFIX, annotations_of, dumps
from webhook.templating.rollout_policy import ROLLOUT, ROLLOUT_POLICY, Policy, State, parse_policy, parse_state
from webhook.templating.template_paths import KSERVE_FRAMEWORKS

CANARY = PREFIX + "canary"
SPLIT_KINDS = ("InferenceService", "SeldonDeployment")
KServeMode = Literal["canary", "canary-traffic-percent"]
# The predictor's model containers (KSERVE_FRAMEWORKS). In a spec.canary[] entry KServe's schema requires each to
# be named (spec.predictor's do not); a copy without a name gets the one KServe gives the
# predictor's container.
KSERVE_CONTAINER = "kserve-container"


@dataclass(frozen=True, slots=True)
class Split:
    spec: dict[str, Any]
    # state.to pointers the split could not carry (outside the split predictor); they move at promotion
    unsplit: tuple[str, ...] = ()
    problem: str | None = None  # why nothing was split at all


@dataclass(frozen=True, slots=True)
class Rollout:
    """The rollout as admission reads it from an object: the state in force and how to split KServe."""

    state: State | None = None
    mode: KServeMode = "canary"
    warnings: tuple[str, ...] = ()
    # the state annotation as the patch must leave it (None: removed), when the sender's is not kept
    set_back: tuple[str | None] | None = None


def read(
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    *,
    trusted: bool,
    default: Policy | None,
    writers: Sequence[str],
) -> Rollout:
    """The state and policy of ``obj``.

    The state is the reconciler's: a sender other than the reconciler (not ``trusted``) cannot
    change it, so its version is set back to the stored object's, which is the one in force.
    The policy is the object's ``modelpin.io/rollout-policy`` if it parses, else ``default``.
    """
    warnings: list[str] = []
    sent, stored = annotations_of(obj).get(ROLLOUT), annotations_of(old).get(ROLLOUT)
    raw, set_back = sent, None
    if not trusted and sent != stored:
        raw = stored
        set_back = (stored if isinstance(stored, str) else None,)
        done = "removed" if set_back[0] is None else "set back to the stored object's"
        warnings.append(f"{ROLLOUT} is written only by {written_by(writers)}: {done}")
    state, problem = parse_state(raw)
    if problem is not None:
        warnings.append(problem)
    raw_policy = annotations_of(obj).get(ROLLOUT_POLICY)
    policy, problem = _policy(raw_policy) if isinstance(raw_policy, str) else parse_policy(raw_policy)
    if problem is not None:
        warnings.append(problem)
    chosen = policy or default
    return Rollout(state, chosen.kserve if chosen is not None else "canary", tuple(warnings), set_back)


@functools.lru_cache(maxsize=64)
def _policy(text: str) -> tuple[Policy | None, str | None]:
    # read on every admission of the object; YAML parsing is most of an admission's time otherwise
    return parse_policy(text)


def has_split(kind: str, spec: object) -> bool:
    """Whether ``spec`` carries a piece of a split modelpin wrote (cheap: no copy)."""
    if not isinstance(spec, dict):
        return False
    if kind == "InferenceService":
        canary = spec.get("canary")
        entries = canary if isinstance(canary, list) else []
        return _marked(spec.get("predictor")) is not None or any(
            isinstance(e, dict) and _marked(e.get("predictor")) is not None for e in entries
        )
    if kind == "SeldonDeployment":
        predictors = spec.get("predictors")
        return isinstance(predictors, list) and any(_marked(p) is not None for p in predictors)
    return False


def with_values(spec: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``spec`` with the strings at ``values``' pointers (``/spec/...``) replaced."""
    out = copy.deepcopy(dict(spec))
    for pointer, value in values.items():
        if pointer.startswith("/spec/"):
            _set(out, pointer[len("/spec") :], value)
    return out


def strip(kind: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` without any split modelpin wrote, as git had it."""
    out = copy.deepcopy(dict(spec))
    if kind == "InferenceService":
        canary = out.get("canary")
        if isinstance(canary, list):
            kept = [e for e in canary if not (isinstance(e, dict) and _marked(e.get("predictor")) is not None)]
            if kept:
                out["canary"] = kept
            elif len(kept) != len(canary):
                del out["canary"]
        predictor = out.get("predictor")
        stash = _marked(predictor)
        if isinstance(predictor, dict) and isinstance(stash, dict):
            _unmark(predictor)
            for rel, uri in (stash.get("uris") or {}).items():
                if isinstance(rel, str) and isinstance(uri, str) and isinstance(_get(predictor, rel), str):
                    _set(predictor, rel, uri)
            _restore(predictor, "canaryTrafficPercent", stash.get("canaryTrafficPercent"))
    elif kind == "SeldonDeployment":
        predictors = out.get("predictors")
        if isinstance(predictors, list):
            marks = [_marked(p) for p in predictors]
            kept = [p for p, m in zip(predictors, marks, strict=True) if m is None]
            for mark in marks:
                if not isinstance(mark, dict):
                    continue
                for p in kept:
                    if (
                        isinstance(p, dict)
                        and p.get("name") == mark.get("stable")
                        and p.get("traffic") == mark.get("wrote")
                    ):
                        _restore(p, "traffic", mark.get("traffic"))
            out["predictors"] = kept
    return out


def split(kind: str, spec: Mapping[str, Any], state: State | None, mode: KServeMode = "canary") -> Split:
    """The stripped, resolved ``spec`` with the canary side of ``state`` added."""
    out = copy.deepcopy(dict(spec))
    if state is None or not state.splitting:
        return Split(out)
    if kind == "InferenceService":
        return _kserve(out, state, mode)
    if kind == "SeldonDeployment":
        return _seldon(out, state)
    return Split(out, tuple(state.to), f"{kind} has no traffic split; the new version runs at promotion")


def _kserve(spec: dict[str, Any], state: State, mode: KServeMode) -> Split:
    predictor = spec.get("predictor")
    if not isinstance(predictor, dict):
        return Split(spec, tuple(state.to), "spec.predictor is not an object")
    moved, unsplit = _within(state, "/spec/predictor/")
    if not moved:
        return Split(spec, unsplit, "no field of spec.predictor moves")
    if mode == "canary-traffic-percent":
        stash = {"uris": {rel: _get(predictor, rel) for rel in moved}, "canaryTrafficPercent": None}
        stash["canaryTrafficPercent"] = predictor.get("canaryTrafficPercent")
        for rel, uri in moved.items():
            _set(predictor, rel, uri)
        predictor["canaryTrafficPercent"] = state.percent
        _mark(predictor, dumps(stash))
        return Split(spec, unsplit)
    entries = spec.get("canary")
    if entries is not None and not isinstance(entries, list):
        return Split(spec, tuple(state.to), "spec.canary is not a list")
    shares = [e.get("trafficPercent") if isinstance(e, dict) else None for e in entries or []]
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in shares):
        return Split(spec, tuple(state.to), "spec.canary holds an entry without an integer trafficPercent")
    taken = sum(p for p in shares if isinstance(p, int))
    if taken + state.percent > 100:
        return Split(spec, tuple(state.to), f"spec.canary already carries {taken} % of traffic")
    canary = copy.deepcopy(predictor)
    canary.pop("canaryTrafficPercent", None)
    for key in KSERVE_FRAMEWORKS:
        model = canary.get(key)
        if isinstance(model, dict) and "name" not in model:
            model["name"] = KSERVE_CONTAINER
    for rel, uri in moved.items():
        _set(canary, rel, uri)
    _mark(canary, "true")
    spec["canary"] = [*(entries or []), {"predictor": canary, "trafficPercent": state.percent}]
    return Split(spec, unsplit)


def _seldon(spec: dict[str, Any], state: State) -> Split:
    predictors = spec.get("predictors")
    if not isinstance(predictors, list):
        return Split(spec, tuple(state.to), "spec.predictors is not a list")
    for index, stable in enumerate(predictors):
        moved, unsplit = _within(state, f"/spec/predictors/{index}/")
        if not moved:
            continue
        if not isinstance(stable, dict) or not isinstance(stable.get("name"), str) or stable.get("shadow"):
            return Split(spec, tuple(state.to), f"spec.predictors[{index}] is not a named, non-shadow predictor")
        original = stable.get("traffic")
        base = original if isinstance(original, int) and not isinstance(original, bool) and original > 0 else 100
        # At least 1 on each side: a step of 1 % of a small share still runs the new version.
        share = min(max(round(base * state.percent / 100), 1), base - 1) if base > 1 else 0
        if share == 0:
            return Split(spec, tuple(state.to), f"spec.predictors[{index}] has too little traffic to split")
        canary = copy.deepcopy(stable)
        canary["name"] = f"{stable['name']}-canary"
        for rel, uri in moved.items():
            _set(canary, rel, uri)
        canary["traffic"] = share
        stable["traffic"] = base - share
        _mark(canary, dumps({"stable": stable["name"], "traffic": original, "wrote": base - share}))
        predictors.insert(index + 1, canary)
        return Split(spec, unsplit)
    return Split(spec, tuple(state.to), "no field of spec.predictors moves")


def _within(state: State, prefix: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """The state's ``to`` URIs under ``prefix`` (by pointer relative to it) and the pointers outside."""
    moved = {p[len(prefix) - 1 :]: r["uri"] for p, r in state.to.items() if p.startswith(prefix)}
    return moved, tuple(p for p in state.to if not p.startswith(prefix))


def _marked(node: object) -> object:
    """The mark's value on a predictor (JSON-decoded when it is JSON), or None."""
    if not isinstance(node, dict):
        return None
    annotations = node.get("annotations")
    raw = annotations.get(CANARY) if isinstance(annotations, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def _mark(node: dict[str, Any], value: str) -> None:
    annotations = node.get("annotations")
    node["annotations"] = {**(annotations if isinstance(annotations, dict) else {}), CANARY: value}


def _unmark(node: dict[str, Any]) -> None:
    annotations = node["annotations"]
    del annotations[CANARY]
    if not annotations:
        del node["annotations"]


def _restore(node: dict[str, Any], key: str, value: object) -> None:
    if value is None:
        node.pop(key, None)
    else:
        node[key] = value


def _tokens(pointer: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _get(node: Any, pointer: str) -> Any:
    for token in _tokens(pointer):
        if isinstance(node, dict):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def _set(node: Any, pointer: str, value: str) -> None:
    """Set an existing string at ``pointer``; a path the copy lacks is left alone."""
    *parents, last = _tokens(pointer)
    parent = _get(node, "/" + "/".join(t.replace("~", "~0").replace("/", "~1") for t in parents)) if parents else node
    if isinstance(parent, dict) and isinstance(parent.get(last), str):
        parent[last] = value
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent) and isinstance(parent[int(last)], str):
        parent[int(last)] = value
