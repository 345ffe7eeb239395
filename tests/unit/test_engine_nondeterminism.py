from __future__ import annotations

import inspect
from typing import Any

from sim import Sim, done, engine_for, make_log, step

from durable.replay import (
    Blocked,
    Completed,
    Context,
    Engine,
    Failed,
    HistoryEvent,
    NonDeterminismError,
)

HERE = "test_engine_nondeterminism.py"


@step()
def charge(x: Any) -> Any:
    return x


@step()
def bill(x: Any) -> Any:
    return x


def blocked(engine: Engine) -> NonDeterminismError:
    outcome = engine.outcome
    assert isinstance(outcome, Blocked), outcome
    return outcome.error


def line_of(fn: Any, text: str) -> int:
    """The line number of the first line of ``fn`` containing ``text``."""
    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, line in enumerate(lines) if text in line)


def test_a_different_command_at_a_position_blocks_with_a_precise_message() -> None:
    def order(ctx: Context) -> Any:
        yield charge(1)
        yield charge(2)
        yield ctx.sleep(3600)

    log = make_log("order", (), done(1, "charge", 1), done(2, "charge", 2), done(3, "charge", 3))
    error = blocked(engine_for(order, log))

    line = line_of(order, "ctx.sleep(3600)")
    assert str(error) == (
        "workflow 'order' is not deterministic at position 3: the log recorded step 'charge' "
        f"but the code yielded sleep(3600s) at {HERE}:{line} (order)"
    )
    assert (error.workflow, error.position) == ("order", 3)
    assert (error.recorded, error.yielded) == ("step 'charge'", "sleep(3600s)")


def test_a_step_with_another_name_blocks() -> None:
    def wf(ctx: Context) -> Any:
        yield bill(1)

    error = blocked(engine_for(wf, make_log("wf", (), done(1, "charge", 1))))

    assert "the log recorded step 'charge' but the code yielded step 'bill'" in str(error)


def test_a_signal_with_another_name_blocks() -> None:
    def wf(ctx: Context) -> Any:
        yield ctx.wait_signal("approve")

    log = make_log("wf", (), ("signal_received", {"pos": 1, "name": "reject", "payload": None}))
    error = blocked(engine_for(wf, log))

    assert error.recorded == "wait_signal('reject')"
    assert error.yielded == "wait_signal('approve')"


def test_a_timeout_recorded_for_a_wait_that_has_none_blocks() -> None:
    def wf(ctx: Context) -> Any:
        yield ctx.wait_signal("approve")

    error = blocked(engine_for(wf, make_log("wf", (), ("wait_timed_out", {"pos": 1}))))

    assert error.position == 1
    assert error.yielded == "wait_signal('approve')"


def test_an_event_for_a_position_the_code_has_not_reached_blocks() -> None:
    # Old code ran a and b together; new code runs them one after the other.
    def wf(ctx: Context) -> Any:
        yield charge("a")
        yield bill("b")

    log = make_log("wf", (), done(2, "bill", "b"), done(1, "charge", "a"))
    error = blocked(engine_for(wf, log))

    assert error.position == 2
    assert error.recorded == "step 'bill'"
    assert "still waiting on step 'charge' (position 1)" in error.yielded
    assert error.location == f"{HERE}:{line_of(wf, 'yield charge(')} (wf)"


def test_the_code_returning_while_the_log_goes_on_blocks() -> None:
    def wf(ctx: Context) -> Any:
        yield charge(1)
        return "short"

    error = blocked(engine_for(wf, make_log("wf", (), done(1, "charge", 1), done(2, "bill", 2))))

    assert error.position == 2
    assert error.yielded == "nothing more (the workflow returned)"


def test_the_code_raising_while_the_log_goes_on_blocks() -> None:
    def wf(ctx: Context) -> Any:
        yield charge(1)
        raise KeyError("new bug")

    error = blocked(engine_for(wf, make_log("wf", (), done(1, "charge", 1), done(2, "bill", 2))))

    assert "the workflow raised KeyError" in error.yielded


def test_a_terminal_event_the_code_does_not_reach_blocks() -> None:
    def wf(ctx: Context) -> Any:
        yield charge(1)
        yield bill(2)

    log = make_log("wf", (), done(1, "charge", 1), ("run_completed", {"result": 1}))
    error = blocked(engine_for(wf, log))

    assert error.position == 2
    assert error.recorded == "run_completed (the workflow returned)"
    assert "still waiting on step 'bill'" in error.yielded


def test_a_terminal_event_that_disagrees_with_how_the_code_ended_blocks() -> None:
    def wf(ctx: Context) -> Any:
        yield charge(1)
        raise ValueError("now it fails")

    log = make_log("wf", (), done(1, "charge", 1), ("run_completed", {"result": 1}))
    error = blocked(engine_for(wf, log))

    assert "run_completed" in error.recorded
    assert "the workflow raised ValueError" in error.yielded


def test_matching_terminal_events_are_accepted() -> None:
    def wf(ctx: Context) -> Any:
        return (yield charge(1))

    log = make_log("wf", (), done(1, "charge", 1), ("run_completed", {"result": 1}))
    assert engine_for(wf, log).outcome == Completed(1)


def test_run_failed_after_the_code_completed_is_a_failure_outside_the_code() -> None:
    def wf(ctx: Context) -> Any:
        return (yield charge(1))

    log = make_log(
        "wf",
        (),
        done(1, "charge", 1),
        ("run_failed", {"error_type": "SerializationError", "message": "set", "cause_pos": None}),
    )
    outcome = engine_for(wf, log).outcome

    assert isinstance(outcome, Failed)
    assert "SerializationError: set" in str(outcome.error)


def test_nothing_is_thrown_into_the_workflow_on_non_determinism() -> None:
    seen: list[str] = []

    def wf(ctx: Context) -> Any:
        try:
            yield bill(1)
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise

    blocked(engine_for(wf, make_log("wf", (), done(1, "charge", 1))))

    assert seen == ["GeneratorExit"]  # only the close of the abandoned generator


def test_after_blocking_later_events_are_not_interpreted_but_counted() -> None:
    def wf(ctx: Context) -> Any:
        yield bill(1)

    log = make_log("wf", (), done(1, "charge", 1), ("unheard_of", {}), done(2, "x", 1))
    engine = engine_for(wf, log)

    blocked(engine)
    assert engine.last_seq == 4
    assert engine.pending() == []


def test_location_points_into_helper_generators() -> None:
    def helper(ctx: Context) -> Any:
        yield ctx.sleep(5)

    def wf(ctx: Context) -> Any:
        yield from helper(ctx)

    error = blocked(engine_for(wf, make_log("wf", (), done(1, "charge", 1))))

    assert error.location == f"{HERE}:{line_of(helper, 'ctx.sleep(5)')} (helper)"


def test_a_blocked_run_continues_after_a_code_fix_and_retry() -> None:
    def old(ctx: Context) -> Any:
        yield charge(1)
        return (yield charge(2))

    def broken(ctx: Context) -> Any:
        yield bill(1)
        return (yield charge(2))

    sim = Sim(old, workflow="wf")
    sim.tick()  # step 1 recorded
    log = list(sim.log)

    stuck = Sim(broken, workflow="wf", log=log).run()
    assert stuck.types()[-1] == "run_blocked"

    fixed = Sim(old, workflow="wf", log=stuck.log)
    fixed.retry()
    fixed.run()
    assert fixed.result == 2
    assert fixed.types()[-4:] == ["run_blocked", "run_retried", "step_completed", "run_completed"]


def test_feeding_events_out_of_order_is_an_error() -> None:
    def wf(ctx: Context) -> Any:
        yield charge(1)

    engine = engine_for(wf, make_log("wf", ()))
    event = make_log("wf", ())[0]
    try:
        engine.feed([HistoryEvent(1, "step_completed", {}, event.created_at)], replaying=False)
    except ValueError as exc:
        assert "seq 1" in str(exc)
    else:
        raise AssertionError("expected a ValueError")
