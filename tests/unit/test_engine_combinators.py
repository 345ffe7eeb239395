from __future__ import annotations

import contextlib
from typing import Any

from sim import Script, Sim, StepError, at, done, engine_for, make_log, step

from durable.replay import (
    Blocked,
    Completed,
    Context,
    PendingStep,
    PendingTimer,
    PendingWait,
    StepCall,
    StepFailed,
    WaitTimeout,
)


@step()
def fetch(x: Any) -> Any:
    return x


@step(max_attempts=1)
def explode(x: Any) -> Any:
    raise StepError(f"boom {x}")


def failed(pos: int, name: str) -> tuple[str, dict[str, Any]]:
    data = {"pos": pos, "name": name, "attempts": 1, "error_type": "StepError", "message": "boom"}
    return ("step_failed", data)


def test_all_numbers_its_commands_in_argument_order_and_runs_them_together() -> None:
    def wf(ctx: Context) -> Any:
        return (yield ctx.all(fetch("a"), ctx.sleep(5), ctx.wait_signal("go")))

    engine = engine_for(wf, make_log("wf", ()))

    assert engine.pending() == [
        PendingStep(1, StepCall("fetch", ("a",)), 1, None),
        PendingTimer(2, 5.0, None, None),
        PendingWait(3, "signal", "go", None, None),
    ]


def test_all_returns_results_in_argument_order_whatever_the_finishing_order() -> None:
    def wf(ctx: Context) -> Any:
        return (yield ctx.all(fetch("a"), fetch("b"), fetch("c")))

    log = make_log("wf", (), done(3, "fetch", "c"), done(1, "fetch", "a"), done(2, "fetch", "b"))
    engine = engine_for(wf, log)

    assert engine.outcome == Completed(["a", "b", "c"])


def test_all_raises_the_first_failure_as_soon_as_it_is_known() -> None:
    seen: list[Any] = []

    def wf(ctx: Context) -> Any:
        try:
            yield ctx.all(fetch("a"), explode("b"), explode("c"))
        except StepFailed as exc:
            seen.append(exc.step)
        yield ctx.sleep(1)

    log = make_log("wf", (), failed(3, "explode"))
    engine = engine_for(wf, log)

    assert seen == ["explode"]
    # Only the sleep is pending: the other members of the all are abandoned.
    assert engine.pending() == [PendingTimer(4, 1.0, None, None)]


def test_events_for_abandoned_members_are_accepted_and_ignored() -> None:
    def wf(ctx: Context) -> Any:
        with contextlib.suppress(StepFailed):
            yield ctx.all(fetch("a"), explode("b"))
        return (yield fetch("after"))

    log = make_log(
        "wf", (), failed(2, "explode"), done(1, "fetch", "late"), done(3, "fetch", "after")
    )
    engine = engine_for(wf, log)

    assert engine.outcome == Completed("after")


def test_events_for_abandoned_members_are_still_checked() -> None:
    def wf(ctx: Context) -> Any:
        with contextlib.suppress(StepFailed):
            yield ctx.all(fetch("a"), explode("b"))
        yield ctx.sleep(1)

    log = make_log("wf", (), failed(2, "explode"), done(1, "other", "late"))
    outcome = engine_for(wf, log).outcome

    assert isinstance(outcome, Blocked)
    assert outcome.error.position == 1
    assert "step 'other'" in str(outcome.error)


def test_any_returns_first_finished_and_drops_timer() -> None:
    def wf(ctx: Context) -> Any:
        index, value = yield ctx.any(ctx.sleep(3600), fetch("fast"))
        return [index, value]

    engine = engine_for(
        wf,
        make_log(
            "wf",
            (),
            ("timer_started", {"pos": 1, "fire_at": at(3601).isoformat()}),
        ),
    )
    assert [type(p) for p in engine.pending()] == [PendingTimer, PendingStep]

    engine = engine_for(
        wf,
        make_log(
            "wf",
            (),
            ("timer_started", {"pos": 1, "fire_at": at(3601).isoformat()}),
            done(2, "fetch", "fast"),
        ),
    )
    assert engine.outcome == Completed([1, "fast"])
    assert engine.pending() == []


def test_any_raises_the_error_of_the_first_to_finish_if_it_failed() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield ctx.any(explode("x"), ctx.wait_signal("never"))
        except StepFailed as exc:
            return exc.step

    assert Sim(wf).run().result == "explode"


def test_any_with_a_timed_out_wait_raises_wait_timeout() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield ctx.any(ctx.wait_signal("a", timeout=5), ctx.wait_signal("b"))
        except WaitTimeout as exc:
            return exc.name

    assert Sim(wf).run().result == "a"


def test_timer_fired_later_for_a_dropped_timer_is_ignored() -> None:
    def wf(ctx: Context) -> Any:
        first = yield ctx.any(ctx.sleep(10), ctx.wait_signal("go"))
        second = yield fetch("next")
        return [first, second]

    log = make_log(
        "wf",
        (),
        ("timer_started", {"pos": 1, "fire_at": at(11).isoformat()}),
        ("signal_received", {"pos": 2, "name": "go", "payload": 1}),
        ("timer_fired", {"pos": 1}),
        done(3, "fetch", "n"),
    )

    assert engine_for(wf, log).outcome == Completed([(1, 1), "n"])


def test_all_of_any_nests() -> None:
    def wf(ctx: Context) -> Any:
        return (
            yield ctx.all(
                ctx.any(ctx.wait_signal("a"), ctx.sleep(100)),
                fetch("x"),
                ctx.all(fetch("y"), ctx.any(fetch("z"))),
            )
        )

    sim = Sim(wf, script=Script(signals=[(50, "a", "A")])).run()

    assert sim.result == [(0, "A"), "x", ["y", (0, "z")]]
    # positions depth first: wait a=1, sleep=2, x=3, y=4, z=5
    assert [e.data["pos"] for e in sim.events_of("step_completed")] == [3, 4, 5]


def test_any_of_all_finishes_when_a_whole_group_finishes() -> None:
    def wf(ctx: Context) -> Any:
        return (yield ctx.any(ctx.all(ctx.sleep(10), ctx.sleep(20)), ctx.sleep(15)))

    sim = Sim(wf).run()

    assert sim.result == (1, None)
    assert sim.now == at(15)


def test_failure_inside_a_nested_group_propagates_to_the_top() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield ctx.all(fetch("a"), ctx.any(ctx.all(explode("deep"))))
        except StepFailed as exc:
            return exc.message

    assert Sim(wf).run().result == "boom deep"


def test_empty_all_returns_an_empty_list_at_once() -> None:
    def wf(ctx: Context) -> Any:
        nothing = yield ctx.all()
        nested = yield ctx.any(ctx.all(), ctx.sleep(5))
        return [nothing, nested]

    sim = Sim(wf).run()

    assert sim.result == [[], (0, [])]
    assert sim.types() == ["run_started", "run_completed"]  # the sleep at pos 1 was dropped


def test_same_command_object_twice_gets_two_positions() -> None:
    def wf(ctx: Context) -> Any:
        call = fetch("twice")
        return (yield ctx.all(call, call))

    sim = Sim(wf).run()

    assert sim.result == ["twice", "twice"]
    assert [e.data["pos"] for e in sim.events_of("step_completed")] == [1, 2]


def test_all_of_only_abandoned_results_does_not_resume_twice() -> None:
    resumed: list[Any] = []

    def wf(ctx: Context) -> Any:
        try:
            yield ctx.all(explode(1), explode(2))
        except StepFailed as exc:
            resumed.append(exc.message)
        yield ctx.wait_signal("forever")

    log = make_log("wf", (), failed(1, "explode"), failed(2, "explode"))
    engine = engine_for(wf, log)

    assert resumed == ["boom"]
    assert engine.pending() == [PendingWait(3, "signal", "forever", None, None)]
