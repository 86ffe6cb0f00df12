"""The rollout policy and the ``modelpin.io/rollout`` state: parsed tolerantly, written deterministically."""

from __future__ import annotations

import json

import pytest

from webhook.templating.rollout_policy import Phase, Policy, State, dump_state, parse_policy, parse_state

EXAMPLE = """
rollout:
  steps: [10, 50]
  step_seconds: 300
  analysis:
    prometheus: https://prometheus.monitoring.svc:9090
    queries:
      - name: error-rate
        query: 'sum(rate(errors_total{namespace="{{namespace}}",model_version="{{ version }}"}[5m]))'
        max: 0.01
"""

ANALYSIS = "rollout: {steps: [10], analysis: {prometheus: 'http://p', queries: [%s]}}"
RECORD = {
    "registry": "mlflow",
    "model": "iris",
    "selector": "@champion",
    "version": "3",
    "run_id": "r",
    "uri": "s3://b/3",
}


def test_the_documented_example_parses_with_its_defaults() -> None:
    policy, problem = parse_policy(EXAMPLE)
    assert problem is None and policy is not None
    assert policy.steps == [10, 50] and policy.step_seconds == 300 and policy.kserve == "canary"
    assert policy.analysis is not None
    (query,) = policy.analysis.queries
    assert (query.name, query.max, query.min, query.require_data) == ("error-rate", 0.01, None, True)


def test_json_and_a_bare_body_are_the_same_policy() -> None:
    as_json, _ = parse_policy(json.dumps({"rollout": {"steps": [5, 25], "step_seconds": 60}}))
    bare, _ = parse_policy("steps: [5, 25]\nstep_seconds: 60")
    assert as_json is not None and as_json == bare
    assert bare is not None and as_json.digest == bare.digest


def test_the_digest_changes_with_the_policy() -> None:
    a, _ = parse_policy("steps: [10]")
    b, _ = parse_policy("steps: [20]")
    assert a is not None and b is not None and a.digest != b.digest and len(a.digest) == 12


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("rollout: {steps: [50, 10]}", "rollout.steps: Value error, steps must increase"),
        ("rollout: {steps: [0]}", "rollout.steps.0:"),
        ("rollout: {steps: [100]}", "rollout.steps.0:"),
        ("rollout: {steps: []}", "rollout.steps:"),
        ("rollout: {steps: [10], colour: red}", "rollout.colour: Extra inputs are not permitted"),
        ("rollout: {steps: [10], kserve: knative}", "rollout.kserve:"),
        (
            "rollout: {steps: [10], analysis: {prometheus: 'ftp://x', queries: [{name: a, query: up, max: 1}]}}",
            "rollout.analysis.prometheus:",
        ),
        (
            "rollout: {steps: [10], analysis: {prometheus: 'http://p', queries: [{name: a, query: up}]}}",
            "query 'a' needs min, max or both",
        ),
        (
            ANALYSIS % "{name: a, query: up, min: 2, max: 1}",
            "min 2.0 is above max 1.0",
        ),
        (
            ANALYSIS % "{name: a, query: '{{pod}}', max: 1}",
            "query 'a' names {{pod}}",
        ),
        (
            "rollout: {steps: [10], analysis: {prometheus: 'http://p', queries: "
            "[{name: a, query: up, max: 1}, {name: a, query: up, max: 2}]}}",
            "query names must be unique",
        ),
        ("rollout: [10, 50]", "rollout: Input should be a valid dictionary"),
        ("- 1", "not a mapping"),
        ("steps: [10", "not YAML or JSON"),
        ("x" * 20000, "larger than"),
    ],
)
def test_a_bad_policy_is_a_problem_naming_the_field(text: str, says: str) -> None:
    policy, problem = parse_policy(text)
    assert policy is None
    assert problem is not None and problem.startswith("ignored modelpin.io/rollout-policy: ")
    assert says in problem, problem


def test_no_policy_is_no_problem() -> None:
    assert parse_policy(None) == (None, None)
    assert parse_policy("") == (None, None)


def test_a_policy_from_the_configuration_names_its_source() -> None:
    _, problem = parse_policy({"steps": "ten"}, source="namespaces.ml.rollout")
    assert problem is not None and problem.startswith("ignored namespaces.ml.rollout: steps:")


def state_json(**changes: object) -> dict[str, object]:
    value: dict[str, object] = {
        "phase": "progressing",
        "step": 0,
        "percent": 10,
        "from": {"/spec/predictor/model/storageUri": RECORD},
        "to": {"/spec/predictor/model/storageUri": {**RECORD, "version": "4", "uri": "s3://b/4"}},
        "started": "2026-01-02T03:04:05Z",
        "step_started": "2026-01-02T03:04:05Z",
        "reason": "",
        "policy_hash": "abc",
    }
    value.update(changes)
    return value


def test_the_state_round_trips_byte_for_byte() -> None:
    raw = json.dumps(state_json(), sort_keys=True, separators=(",", ":"))
    state, problem = parse_state(raw)
    assert problem is None and state is not None
    assert state.phase is Phase.PROGRESSING and state.splitting
    assert state.from_["/spec/predictor/model/storageUri"]["version"] == "3"
    assert dump_state(state) == raw
    assert parse_state(dump_state(state))[0] == state


def test_a_record_missing_fields_reads_them_as_empty() -> None:
    state, _ = parse_state(json.dumps(state_json(to={"/spec/x": {"uri": "s3://b/4"}})))
    assert state is not None
    assert state.to["/spec/x"] == {
        "registry": "",
        "model": "",
        "selector": "",
        "version": "",
        "run_id": "",
        "uri": "s3://b/4",
    }


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (17, "not a string"),
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        (json.dumps(state_json(phase="sideways")), "phase:"),
        (json.dumps(state_json(percent=101)), "percent:"),
        (json.dumps(state_json(started="yesterday")), "started:"),
        (json.dumps(state_json(to={"/metadata/name": {"uri": "x"}})), "is not a pointer under /spec"),
        (json.dumps(state_json(to={"/spec/a": {"version": "4"}})), "has no uri"),
        (json.dumps({k: v for k, v in state_json().items() if k != "from"}), "from: Field required"),
    ],
)
def test_a_damaged_state_is_ignored_with_a_problem(raw: object, says: str) -> None:
    state, problem = parse_state(raw)
    assert state is None
    assert problem is not None and problem.startswith("ignored annotation modelpin.io/rollout: ")
    assert says in problem, problem


@pytest.mark.parametrize(
    ("phase", "percent", "splitting"),
    [
        ("progressing", 10, True),
        ("paused", 50, True),
        ("promoted", 100, False),
        ("rolled-back", 0, False),
        ("aborted", 0, False),
        ("progressing", 0, False),
    ],
)
def test_only_a_live_rollout_splits_traffic(phase: str, percent: int, splitting: bool) -> None:
    state = State.model_validate(state_json(phase=phase, percent=percent))
    assert state.splitting is splitting


def test_a_policy_is_immutable() -> None:
    policy = Policy(steps=[10])
    with pytest.raises(Exception, match="frozen"):
        policy.steps = [20]  # type: ignore[misc]
