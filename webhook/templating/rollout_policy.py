"""Progressive rollouts: the policy (``rollout:``) and the state annotation ``modelpin.io/rollout``.

The policy comes from the configuration (per namespace) or from an object's
``modelpin.io/rollout-policy`` annotation (the same YAML or JSON). The state is
written by the reconciler and read by the webhook, which derives the traffic
split from it. Both are read from text anyone may edit, so parsing answers with
a problem string naming the field, never an exception.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from webhook.templating.record_annotations import PREFIX, RECORD_FIELDS, dumps, object_annotation
from webhook.templating.rollout_annotations import parse_time

ROLLOUT = PREFIX + "rollout"
ROLLOUT_POLICY = PREFIX + "rollout-policy"

# What a query may name; each is replaced by a PromQL-escaped string (analysis.py).
PLACEHOLDERS = ("namespace", "name", "model", "version")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# The policy annotation shares the 256 KiB of all annotations; a policy is a few hundred bytes.
MAX_POLICY_BYTES = 16 * 1024
MAX_STATE_BYTES = 32 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Query(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=63)]
    query: Annotated[str, Field(min_length=1, max_length=4096)]
    min: float | None = None
    max: float | None = None
    require_data: bool = True

    @pydantic.model_validator(mode="after")
    def _bounded(self) -> Query:
        if self.min is None and self.max is None:
            raise ValueError(f"query {self.name!r} needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"query {self.name!r}: min {self.min} is above max {self.max}")
        unknown = sorted({m.group(1) for m in _PLACEHOLDER.finditer(self.query)} - set(PLACEHOLDERS))
        if unknown:
            raise ValueError(
                f"query {self.name!r} names {', '.join('{{' + u + '}}' for u in unknown)}; "
                f"known: {', '.join('{{' + p + '}}' for p in PLACEHOLDERS)}"
            )
        return self


class Analysis(_Strict):
    prometheus: Annotated[str, Field(pattern=r"^https?://[^\s/]+")]
    queries: Annotated[list[Query], Field(min_length=1, max_length=20)]
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0

    @pydantic.field_validator("queries")
    @classmethod
    def _unique(cls, queries: list[Query]) -> list[Query]:
        names = [q.name for q in queries]
        if len(set(names)) != len(names):
            raise ValueError("query names must be unique")
        return queries


class Policy(_Strict):
    """``rollout:``: the traffic steps, the time at each, and the analysis every step must pass."""

    steps: Annotated[list[Annotated[int, Field(ge=1, le=99)]], Field(min_length=1, max_length=20)]
    step_seconds: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] = 300
    analysis: Analysis | None = None
    # KServe: a modelpin-made entry of spec.canary[] (default), or spec.predictor.canaryTrafficPercent
    # (Knative revisions; serverless mode only). See traffic.py.
    kserve: Literal["canary", "canary-traffic-percent"] = "canary"

    @pydantic.field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[int]) -> list[int]:
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("steps must increase (percent of traffic on the new version, promotion after the last)")
        return steps

    @property
    def digest(self) -> str:
        """A short hash of the policy, kept in the state so a changed policy can be told."""
        return hashlib.sha256(dumps(self.model_dump(mode="json")).encode()).hexdigest()[:12]


def parse_policy(raw: object, source: str = ROLLOUT_POLICY) -> tuple[Policy | None, str | None]:
    """A policy from YAML/JSON text (``rollout:`` at the top, or bare) or a parsed mapping."""
    if raw is None or raw == "":
        return None, None
    value: object = raw
    if isinstance(raw, str):
        if len(raw.encode()) > MAX_POLICY_BYTES:
            return None, f"ignored {source}: larger than {MAX_POLICY_BYTES} bytes"
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            return None, f"ignored {source}: not YAML or JSON ({str(err).splitlines()[0]})"
    if not isinstance(value, Mapping):
        return None, f"ignored {source}: not a mapping"
    wrapped = set(value) == {"rollout"}
    body, prefix = (value["rollout"], ["rollout"]) if wrapped else (value, [])
    try:
        return Policy.model_validate(body), None
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in [*prefix, *first["loc"]]) or "rollout"
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        return None, f"ignored {source}: {where}: {first['msg']}{more}"


class Phase(StrEnum):
    PROGRESSING = "progressing"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    ABORTED = "aborted"


# While these hold, the webhook writes the split; after, the object runs one version.
SPLITTING = (Phase.PROGRESSING, Phase.PAUSED)

Record = dict[str, str]


class State(BaseModel):
    """``modelpin.io/rollout``: where one object's rollout stands."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    phase: Phase
    step: Annotated[int, Field(ge=0)] = 0
    percent: Annotated[int, Field(ge=0, le=100)] = 0
    from_: Annotated[dict[str, Record], Field(alias="from")]  # pointer -> record, as in modelpin.io/resolved
    to: dict[str, Record]
    started: str
    step_started: str
    reason: str = ""
    policy_hash: str = ""

    @pydantic.field_validator("from_", "to")
    @classmethod
    def _records(cls, value: dict[str, Record]) -> dict[str, Record]:
        for pointer, record in value.items():
            if not pointer.startswith("/spec/"):
                raise ValueError(f"{pointer!r} is not a pointer under /spec")
            if not isinstance(record.get("uri"), str) or not record["uri"]:
                raise ValueError(f"the record of {pointer} has no uri")
        return {p: {f: r.get(f, "") for f in RECORD_FIELDS} for p, r in value.items()}

    @pydantic.field_validator("started", "step_started")
    @classmethod
    def _time(cls, value: str) -> str:
        parse_time(value)
        return value

    @property
    def splitting(self) -> bool:
        return self.phase in SPLITTING and 0 < self.percent < 100

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def dump_state(state: State) -> str:
    return dumps(state.to_json())


def parse_state(raw: object) -> tuple[State | None, str | None]:
    """The state, or None; the second value names what was wrong with a damaged annotation."""
    if raw is None or raw == "":
        return None, None
    if not isinstance(raw, str):
        return None, f"ignored annotation {ROLLOUT}: not a string"
    if len(raw.encode()) > MAX_STATE_BYTES:
        return None, f"ignored annotation {ROLLOUT}: larger than {MAX_STATE_BYTES} bytes"
    value, problem = object_annotation(raw, ROLLOUT)
    if value is None:
        return None, problem
    try:
        return State.model_validate(value), None
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "value"
        return None, f"ignored annotation {ROLLOUT}: {where}: {first['msg']}"
