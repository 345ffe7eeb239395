from __future__ import annotations

import inspect
from typing import Any

from sim import Sim, done, engine_for, make_log, step

from durable.replay import (
    Completed,
    Context,
    ContinuedAsNew,
    Engine,
    Failed,
    UnyieldedCommandError,
)

HERE = "test_engine_yield_rules.py"


@step()
def charge(x: Any) -> Any:
    return x


def failure(engine: Engine) -> BaseException:
    outcome = engine.outcome
    assert isinstance(outcome, Failed), outcome
    assert outcome.cause_pos is None
    return outcome.error


def line_of(fn: Any, text: str) -> int:
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if text in line)


def test_yielding_a_plain_value_fails_with_a_type_error() -> None:
    def wf(ctx: Context) -> Any:
        yield 5

    error = failure(engine_for(wf, make_log("wf", ())))

    assert isinstance(error, TypeError)
    assert f"workflow 'wf' yielded 5 (int) at {HERE}:{line_of(wf, 'yield 5')}" in str(error)
    assert "may only yield a step call" in str(error)


def test_yielding_a_bare_generator_suggests_yield_from() -> None:
    def helper() -> Any:
        yield charge(1)

    def wf(ctx: Context) -> Any:
        yield helper()

    error = failure(engine_for(wf, make_log("wf", ())))

    assert isinstance(error, TypeError)
    assert "yield from helper(...)" in str(error)


def test_a_non_command_inside_all_fails_with_a_type_error() -> None:
    def wf(ctx: Context) -> Any:
        yield ctx.all(charge(1), "oops")

    error = failure(engine_for(wf, make_log("wf", ())))

    assert isinstance(error, TypeError)
    assert "it contains 'oops' (str)" in str(error)


def test_continue_as_new_inside_any_fails_with_a_type_error() -> None:
    def wf(ctx: Context) -> Any:
        yield ctx.any(ctx.sleep(1), ctx.continue_as_new(2))

    error = failure(engine_for(wf, make_log("wf", ())))

    assert isinstance(error, TypeError)
    assert "continue_as_new cannot be combined" in str(error)


def test_continue_as_new_at_top_level_ends_the_history_with_the_new_args() -> None:
    def wf(ctx: Context, n: int) -> Any:
        yield charge(n)
        yield ctx.continue_as_new(n + 1)

    sim = Sim(wf, 1).run()

    assert sim.outcome == ContinuedAsNew((2,))
    assert sim.types() == ["run_started", "step_completed", "run_continued"]
    assert sim.log[-1].data == {"args": [2]}
    assert isinstance(sim.replayed().outcome, ContinuedAsNew)


def test_a_step_called_but_not_yielded_fails_the_run_at_the_next_yield() -> None:
    def wf(ctx: Context) -> Any:
        charge(1)
        yield ctx.sleep(1)

    error = failure(engine_for(wf, make_log("wf", ())))

    assert isinstance(error, UnyieldedCommandError)
    assert str(error) == (
        f"step 'charge' was called at {HERE}:{line_of(wf, 'charge(1)')} but never yielded; "
        "write `yield charge(...)`"
    )


def test_a_step_called_but_not_yielded_before_return_fails_the_run() -> None:
    def wf(ctx: Context) -> Any:
        value = yield charge(1)
        charge(value)
        return value

    error = failure(engine_for(wf, make_log("wf", (), done(1, "charge", 1))))

    assert isinstance(error, UnyieldedCommandError)


def test_forgetting_yield_reports_the_unyielded_step_not_the_resulting_type_error() -> None:
    def wf(ctx: Context) -> Any:
        receipt = charge(1)  # forgot `yield`
        return receipt["id"]
        yield  # pragma: no cover - makes this a generator

    error = failure(engine_for(wf, make_log("wf", ())))

    assert isinstance(error, UnyieldedCommandError)
    assert isinstance(error.__context__, TypeError)


def test_a_ctx_command_not_yielded_is_reported_with_its_own_hint() -> None:
    def wf(ctx: Context) -> Any:
        ctx.wait_signal("go")
        yield charge(1)

    error = failure(engine_for(wf, make_log("wf", ())))

    assert isinstance(error, UnyieldedCommandError)
    assert "wait_signal('go') was called" in str(error)
    assert "`yield ctx.wait_signal(...)`" in str(error)


def test_commands_passed_into_all_count_as_yielded() -> None:
    def wf(ctx: Context) -> Any:
        a = charge("a")
        b = ctx.sleep(1)
        calls = [charge(i) for i in range(2)]
        return (yield ctx.all(a, b, *calls))

    assert Sim(wf).run().result == ["a", None, 0, 1]


def test_a_command_created_early_and_yielded_later_is_still_reported() -> None:
    def wf(ctx: Context) -> Any:
        later = charge(2)
        yield ctx.sleep(1)
        yield later

    error = failure(engine_for(wf, make_log("wf", ())))

    assert isinstance(error, UnyieldedCommandError)


def test_yielding_the_same_command_twice_runs_it_twice() -> None:
    def wf(ctx: Context) -> Any:
        call = charge(7)
        first = yield call
        second = yield call
        return [first, second]

    sim = Sim(wf).run()

    assert sim.result == [7, 7]
    assert isinstance(sim.replayed().outcome, Completed)
