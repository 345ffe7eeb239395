from __future__ import annotations

from typing import Any

from sim import Sim, StepError, at, done, engine_for, make_log, step

from durable.replay import (
    Completed,
    Context,
    Engine,
    Failed,
    PendingStep,
    StepCall,
    StepFailed,
)


@step()
def add(a: int, b: int) -> int:
    return a + b


@step(max_attempts=3, retry_interval=10)
def flaky(x: int, *, attempt: int) -> int:
    if attempt < 3:
        raise StepError(f"attempt {attempt} failed")
    return x * 10


@step(max_attempts=2)
def broken(x: int) -> int:
    raise StepError(f"cannot do {x}")


def test_run_started_starts_the_generator_with_decoded_args() -> None:
    calls: list[tuple[str, str, Any]] = []

    def decode(kind: str, name: str, raw: Any) -> Any:
        calls.append((kind, name, raw))
        return tuple(raw) if kind == "args" else raw

    def wf(ctx: Context, a: int, b: int) -> Any:
        return (yield add(a, b))

    engine = Engine(wf, workflow="sum", run_id="r1", decode=decode)
    engine.feed(make_log("sum", (2, 3)), replaying=False)

    assert calls == [("args", "sum", [2, 3])]
    assert engine.pending() == [PendingStep(1, StepCall("add", (2, 3)), 1, None)]


def test_step_result_is_decoded_with_the_step_name() -> None:
    calls: list[tuple[str, str, Any]] = []

    def decode(kind: str, name: str, raw: Any) -> Any:
        calls.append((kind, name, raw))
        return tuple(raw) if kind == "args" else {"decoded": raw}

    def wf(ctx: Context) -> Any:
        return (yield add(1, 2))

    engine = Engine(wf, workflow="wf", run_id="r1", decode=decode)
    engine.feed(make_log("wf", (), done(1, "add", 3)), replaying=True)

    assert calls[1] == ("step", "add", 3)
    assert engine.outcome == Completed({"decoded": 3})


def test_steps_run_in_sequence_and_the_workflow_returns_their_results() -> None:
    def wf(ctx: Context, n: int) -> Any:
        total = 0
        for i in range(n):
            total = yield add(total, i)
        return total

    sim = Sim(wf, 5).run()

    assert sim.result == 10
    assert [e.data["pos"] for e in sim.events_of("step_completed")] == [1, 2, 3, 4, 5]
    assert sim.types()[-1] == "run_completed"


def test_pending_step_counts_failed_attempts_and_waits_for_retry_at() -> None:
    def wf(ctx: Context) -> Any:
        return (yield flaky(4))

    log = make_log(
        "wf",
        (),
        (
            "step_attempt_failed",
            {
                "pos": 1,
                "name": "flaky",
                "attempt": 1,
                "error_type": "StepError",
                "message": "no",
                "retry_at": "2024-01-01T00:00:30+00:00",
            },
        ),
        (
            "step_attempt_failed",
            {
                "pos": 1,
                "name": "flaky",
                "attempt": 2,
                "error_type": "StepError",
                "message": "no",
                "retry_at": "2024-01-01T00:01:00Z",
            },
        ),
    )
    engine = engine_for(wf, log)

    [pending] = engine.pending()
    assert isinstance(pending, PendingStep)
    assert pending.attempt == 3
    assert pending.not_before == at(60)
    assert engine.outcome is None


def test_retries_survive_a_crash_during_backoff() -> None:
    def wf(ctx: Context) -> Any:
        return (yield flaky(4))

    sim = Sim(wf).run()
    assert sim.result == 40
    assert sim.types().count("step_attempt_failed") == 2

    after_first_failure = sim.resumed(2)  # run_started, step_attempt_failed
    [pending] = after_first_failure.engine.pending()
    assert isinstance(pending, PendingStep) and pending.attempt == 2
    assert after_first_failure.run().log == sim.log


def test_exhausted_step_raises_step_failed_at_the_yield() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield broken(7)
        except StepFailed as exc:
            return [exc.step, exc.error_type, exc.message, exc.attempts]

    sim = Sim(wf).run()

    assert sim.result == ["broken", "StepError", "cannot do 7", 2]


def test_uncaught_step_failure_fails_the_run_with_its_position() -> None:
    def wf(ctx: Context) -> Any:
        yield add(1, 1)
        yield broken(7)

    sim = Sim(wf).run()

    outcome = sim.outcome
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, StepFailed)
    assert outcome.cause_pos == 2
    assert sim.log[-1].data["cause_pos"] == 2


def test_a_different_error_raised_after_a_step_failure_has_no_cause_pos() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield broken(7)
        except StepFailed as exc:
            raise RuntimeError("gave up") from exc

    outcome = Sim(wf).run().outcome

    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, RuntimeError)
    assert outcome.cause_pos is None


def test_re_raising_the_same_step_failure_later_keeps_its_cause_pos() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield broken(7)
        except StepFailed as exc:
            saved = exc
        yield add(1, 2)
        raise saved

    outcome = Sim(wf).run().outcome

    assert isinstance(outcome, Failed)
    assert outcome.cause_pos == 1


def test_workflow_exception_fails_the_run() -> None:
    def wf(ctx: Context) -> Any:
        value = yield add(1, 2)
        raise ValueError(f"bad {value}")

    outcome = Sim(wf).run().outcome

    assert isinstance(outcome, Failed)
    assert str(outcome.error) == "bad 3"
    assert outcome.cause_pos is None


def test_retry_of_a_failed_run_voids_the_failure_and_runs_the_step_afresh() -> None:
    fixed = {"yes": False}

    @step(max_attempts=2)
    def fragile(x: int) -> int:
        if not fixed["yes"]:
            raise StepError("down")
        return x

    def wf(ctx: Context) -> Any:
        first = yield add(1, 1)
        second = yield fragile(5)
        return first + second

    sim = Sim(wf).run()
    assert isinstance(sim.outcome, Failed)
    first_run = add.executions

    fixed["yes"] = True
    sim.retry()
    [pending] = sim.engine.pending()
    assert isinstance(pending, PendingStep) and pending.attempt == 1
    sim.run()

    assert sim.result == 7
    assert add.executions == first_run  # completed steps are not executed again
    assert sim.types()[-3:] == ["run_retried", "step_completed", "run_completed"]


def test_a_workflow_that_is_not_a_generator_fails_with_a_type_error() -> None:
    def not_a_generator(ctx: Context) -> int:
        return 1

    outcome = engine_for(not_a_generator, make_log("not_a_generator", ())).outcome

    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, TypeError)
    assert "generator function" in str(outcome.error)


def test_wrong_arguments_fail_the_run() -> None:
    def wf(ctx: Context, a: int) -> Any:
        yield add(a, a)

    outcome = engine_for(wf, make_log("wf", (1, 2))).outcome

    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, TypeError)


def test_a_workflow_that_returns_before_any_yield_completes() -> None:
    def wf(ctx: Context) -> Any:
        if True:
            return "early"
        yield add(1, 1)

    assert engine_for(wf, make_log("wf", ())).outcome == Completed("early")


def test_helper_generators_run_through_yield_from() -> None:
    def charge_twice(x: int) -> Any:
        a = yield add(x, 0)
        b = yield add(x, 1)
        return a + b

    def wf(ctx: Context) -> Any:
        total = yield from charge_twice(10)
        return total

    assert Sim(wf).run().result == 21
