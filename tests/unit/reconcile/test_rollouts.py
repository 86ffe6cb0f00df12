"""The rollout's step logic: start, hold each step, analyse, step up, promote, roll back, pause, commands."""

from __future__ import annotations

import datetime as dt

import pytest

from webhook.reconcile.analysis import Outcome, Verdict
from webhook.reconcile.rollouts import Command, Event, Hold, advance, command, start
from webhook.templating.rollout_policy import Analysis, Phase, Policy, Query, State

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
FIELD = "/spec/predictor/model/storageUri"


def records(version: str) -> dict[str, dict[str, str]]:
    return {
        FIELD: {
            "registry": "mlflow",
            "model": "iris",
            "selector": "@champion",
            "version": version,
            "run_id": "",
            "uri": f"s3://m/{version}",
        }
    }


ANALYSED = Policy(
    steps=[10, 50],
    step_seconds=300,
    analysis=Analysis(prometheus="http://p:9090", queries=[Query(name="error-rate", query="e", max=0.01)]),
)
TIMED = Policy(steps=[10, 50], step_seconds=300)
PASS = Outcome(Verdict.PASS)


def after(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def begun(policy: Policy = ANALYSED) -> State:
    step = start(None, records("3"), records("4"), policy, T0)
    assert step.state is not None
    return step.state


def test_an_alias_move_starts_on_the_first_step() -> None:
    step = start(None, records("3"), records("4"), ANALYSED, T0)
    state = step.state
    assert state is not None and (step.write, step.touch) == (True, True)
    assert (state.phase, state.step, state.percent) == (Phase.PROGRESSING, 0, 10)
    assert state.from_ == records("3") and state.to == records("4")
    assert state.started == state.step_started == "2026-01-02T03:04:05Z"
    assert state.policy_hash == ANALYSED.digest
    assert step.events == (
        Event(
            "Normal",
            "RolloutStarted",
            "rollout of iris started: version 4 on 10 % of traffic, version 3 on the rest",
        ),
    )


def test_the_same_target_again_changes_nothing() -> None:
    state = begun()
    step = start(state, records("3"), records("4"), ANALYSED, after(10))
    assert step.state is state and not step.write and not step.events


def test_nothing_moved_nothing_starts() -> None:
    step = start(None, records("3"), records("3"), ANALYSED, T0)
    assert step.state is None and not step.write


def test_a_second_move_mid_rollout_redirects_from_the_stable_version() -> None:
    state = advance(begun(), ANALYSED, after(300), PASS).state
    assert state is not None and state.percent == 50
    # the running stable version is still 3, whatever the object's current records say
    step = start(state, records("4"), records("5"), ANALYSED, after(400))
    assert step.state is not None
    assert (step.state.percent, step.state.from_, step.state.to) == (10, records("3"), records("5"))
    assert step.events[0].message.startswith("rollout of iris redirected: version 5 on 10 %")


def test_the_alias_moving_back_ends_the_rollout_without_a_hold() -> None:
    step = start(begun(), records("4"), records("3"), ANALYSED, after(60))
    assert step.state is not None and step.state.phase is Phase.ABORTED and step.state.percent == 0
    assert step.touch and step.hold is None
    assert step.events == (Event("Normal", "RolloutAborted", "the registry names the running version again"),)


def test_each_step_is_held_for_its_time() -> None:
    state = begun()
    step = advance(state, ANALYSED, after(299), PASS)
    assert step.state is state and not step.write and step.due == after(300)


def test_analysis_runs_before_a_step_up() -> None:
    step = advance(begun(), ANALYSED, after(300))
    assert step.analyse and not step.write


def test_a_passing_step_moves_up_and_restarts_the_clock() -> None:
    step = advance(begun(), ANALYSED, after(301), PASS)
    state = step.state
    assert state is not None and (state.step, state.percent) == (1, 50)
    assert state.step_started == "2026-01-02T03:09:06Z" and state.started == "2026-01-02T03:04:05Z"
    assert (step.write, step.touch, step.history) == (True, True, None)
    assert step.events == (Event("Normal", "RolloutStepped", "rollout of iris: version 4 on 50 % of traffic"),)


def test_the_last_passing_step_promotes() -> None:
    at50 = advance(begun(), ANALYSED, after(300), PASS).state
    assert at50 is not None
    assert advance(at50, ANALYSED, after(599), PASS).due == after(600)
    step = advance(at50, ANALYSED, after(600), PASS)
    assert step.state is not None and (step.state.phase, step.state.percent) == (Phase.PROMOTED, 100)
    assert (step.touch, step.history, step.hold) == (True, "moved", None)
    assert step.events[0].reason == "RolloutPromoted"
    assert advance(step.state, ANALYSED, after(10_000), PASS).state is step.state, "a promoted rollout is done"


def test_without_analysis_time_alone_steps_up() -> None:
    state = begun(TIMED)
    at50 = advance(state, TIMED, after(300)).state
    assert at50 is not None and at50.percent == 50
    promoted = advance(at50, TIMED, after(600)).state
    assert promoted is not None and promoted.phase is Phase.PROMOTED


@pytest.mark.parametrize(
    ("outcome", "says"),
    [
        (Outcome(Verdict.FAIL, "error-rate 0.034 > 0.01 at 10 %"), "analysis failed: error-rate 0.034 > 0.01 at 10 %"),
        (Outcome(Verdict.NO_DATA, "error-rate: no data at 10 %"), "analysis failed: error-rate: no data at 10 %"),
    ],
)
def test_a_failing_step_rolls_back_and_holds_the_old_version(outcome: Outcome, says: str) -> None:
    step = advance(begun(), ANALYSED, after(300), outcome)
    state = step.state
    assert state is not None and (state.phase, state.percent, state.reason) == (Phase.ROLLED_BACK, 0, says)
    assert (step.write, step.touch, step.history) == (True, True, "rollback")
    assert step.hold == Hold(f"rollout of version 4 rolled-back: {says}", {FIELD: "3"})
    (event,) = step.events
    assert (event.type, event.reason) == ("Warning", "RolloutRolledBack")
    assert event.message == f"rollout of iris rolled-back: version 3 on all traffic ({says})"


def test_an_unreachable_prometheus_pauses_without_moving_traffic() -> None:
    outcome = Outcome(Verdict.UNREACHABLE, "error-rate: Prometheus at http://p:9090 unreachable (refused)")
    step = advance(begun(), ANALYSED, after(300), outcome)
    state = step.state
    assert state is not None and (state.phase, state.percent) == (Phase.PAUSED, 10)
    assert state.reason == "analysis could not run: " + outcome.reason
    assert step.write and not step.touch and step.hold is None and step.history is None
    assert step.events[0].type == "Warning" and step.events[0].reason == "RolloutPaused"
    assert advance(state, ANALYSED, after(10_000), PASS).state is state, "paused stays paused until resumed"


def test_pause_and_resume_keep_the_time_served() -> None:
    state = begun()
    paused = command(state, Command.PAUSE, after(100), by="alice")
    assert paused.state is not None and paused.state.phase is Phase.PAUSED and paused.state.reason == "paused by alice"
    assert paused.write and not paused.touch
    resumed = command(paused.state, Command.RESUME, after(400), by="alice")
    assert resumed.state is not None and resumed.state.phase is Phase.PROGRESSING
    assert resumed.state.step_started == state.step_started
    assert advance(resumed.state, ANALYSED, after(400)).analyse, "the step's time was served: analysis at once"


def test_promote_skips_the_remaining_steps_and_analysis() -> None:
    step = command(begun(), Command.PROMOTE, after(5), by="alice")
    assert step.state is not None and step.state.phase is Phase.PROMOTED and step.state.reason == "promoted by alice"
    assert step.history == "moved" and step.touch


def test_abort_returns_to_the_old_version_and_holds_it() -> None:
    step = command(begun(), Command.ABORT, after(5), by="alice")
    assert step.state is not None and step.state.phase is Phase.ABORTED and step.state.percent == 0
    assert step.hold == Hold("rollout of version 4 aborted: aborted by alice", {FIELD: "3"})
    assert step.events[0].reason == "RolloutAborted" and step.history == "rollback"


def test_resuming_a_progressing_rollout_is_refused() -> None:
    state = begun()
    step = command(state, Command.RESUME, after(5))
    assert step.state is state and not step.write
    assert step.refused == "cannot resume: the rollout is progressing"


def test_commands_need_a_live_rollout() -> None:
    assert command(None, Command.PAUSE, T0).refused == "cannot pause: no rollout"
    promoted = command(begun(), Command.PROMOTE, T0).state
    assert command(promoted, Command.ABORT, T0).refused == "cannot abort: the rollout is promoted"
    paused = command(begun(), Command.PAUSE, T0).state
    assert command(paused, Command.PAUSE, T0).refused == "cannot pause: the rollout is paused already"


def test_a_request_made_in_the_second_its_rollout_started_applies() -> None:
    from webhook.reconcile.rollouts import Request

    def state(started: str) -> State:
        return State.model_validate(
            {"phase": "progressing", "from": {}, "to": {}, "started": started, "step_started": started}
        )

    # the rollout began at 10:00:00.4, kept as 10:00:01; the operator's command at 10:00:00.7 reads 10:00:00
    assert Request(Command.ABORT, "alice", "2026-01-01T10:00:00Z", "r1").applies_to(state("2026-01-01T10:00:01Z"))
    # a request from an earlier rollout stays ignored
    assert not Request(Command.ABORT, "alice", "2026-01-01T09:59:58Z", "r2").applies_to(state("2026-01-01T10:00:01Z"))
