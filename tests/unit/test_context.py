from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sim import BASE, Sim, at, done, engine_for, make_log, step

from durable.replay import (
    ChildCall,
    Completed,
    Context,
    Failed,
    Sleep,
    WaitEvent,
    WaitSignal,
    current_context,
)


@step()
def work(x: int) -> int:
    return x


def ctx_alone() -> Context:
    return Context(run_id="r1", workflow="wf", seed=42)


def test_sleep_takes_seconds_or_timedelta() -> None:
    ctx = ctx_alone()
    assert ctx.sleep(90) == Sleep(seconds=90.0)
    assert ctx.sleep(timedelta(minutes=2)) == Sleep(seconds=120.0)


def test_sleep_refuses_negative_and_non_numbers() -> None:
    ctx = ctx_alone()
    with pytest.raises(ValueError):
        ctx.sleep(-1)
    with pytest.raises(TypeError):
        ctx.sleep("5")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ctx.sleep(True)


def test_sleep_until_refuses_a_naive_datetime_at_the_call() -> None:
    ctx = ctx_alone()
    with pytest.raises(ValueError, match="aware"):
        ctx.sleep_until(datetime(2024, 1, 1))
    when = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    assert ctx.sleep_until(when) == Sleep(until=when)


def test_wait_timeouts_take_seconds_or_timedelta() -> None:
    ctx = ctx_alone()
    assert ctx.wait_signal("go") == WaitSignal("go", None)
    assert ctx.wait_signal("go", timeout=timedelta(days=2)) == WaitSignal("go", 172800.0)
    assert ctx.wait_event("paid", timeout=5) == WaitEvent("paid", 5.0)


def test_child_takes_a_name_or_an_object_with_durable_name() -> None:
    class Decorated:
        durable_name = "ship"

    ctx = ctx_alone()
    assert ctx.child("ship", 1, 2) == ChildCall("ship", (1, 2))
    assert ctx.child(Decorated(), 3) == ChildCall("ship", (3,))
    with pytest.raises(TypeError):
        ctx.child(42)


def test_any_of_nothing_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        ctx_alone().any()


def test_current_context_is_set_only_while_workflow_code_runs() -> None:
    seen: list[Context | None] = []

    def wf(ctx: Context) -> Any:
        seen.append(current_context())
        yield work(1)
        seen.append(current_context())

    engine = engine_for(wf, make_log("wf", (), done(1, "work", 1)))

    assert isinstance(engine.outcome, Completed)
    assert len(seen) == 2 and all(isinstance(c, Context) for c in seen)
    assert current_context() is None
    assert work(5) == 5  # outside a workflow a step simply runs


def test_now_is_the_time_of_the_event_that_resumed_the_code() -> None:
    def wf(ctx: Context) -> Any:
        first = ctx.now()
        yield work(1)
        return [first, ctx.now()]

    engine = engine_for(wf, make_log("wf", (), done(1, "work", 1)))

    assert engine.outcome == Completed([BASE, at(1)])
    assert engine.outcome.result[1].tzinfo is UTC  # type: ignore[union-attr]


def test_random_is_one_seeded_generator_per_run() -> None:
    def wf(ctx: Context) -> Any:
        rng = ctx.random()
        values = [rng.random(), ctx.random().random()]
        yield work(1)
        return [ctx.random() is rng, *values, str(ctx.uuid4())]

    first = engine_for(wf, make_log("wf", (), done(1, "work", 1), seed=5)).outcome
    again = engine_for(wf, make_log("wf", (), done(1, "work", 1), seed=5)).outcome
    other = engine_for(wf, make_log("wf", (), done(1, "work", 1), seed=6)).outcome

    assert isinstance(first, Completed)
    assert first == again
    assert first.result[0] is True
    assert first.result[1] != first.result[2]
    assert other != first
    assert uuid.UUID(first.result[3]).version == 4


def test_uuid4_does_not_shift_random() -> None:
    def wf(ctx: Context, draw_uuid: bool) -> Any:
        if draw_uuid:
            ctx.uuid4()
        yield work(1)
        return ctx.random().random()

    with_uuid = engine_for(wf, make_log("wf", (True,), done(1, "work", 1))).outcome
    without = engine_for(wf, make_log("wf", (False,), done(1, "work", 1))).outcome
    assert with_uuid == without


def test_run_id_and_workflow_are_exposed() -> None:
    def wf(ctx: Context) -> Any:
        yield work(1)
        return [ctx.run_id, ctx.workflow]

    assert engine_for(wf, make_log("wf", (), done(1, "work", 1))).outcome == Completed(["r1", "wf"])


def test_logger_is_silent_while_replaying_and_speaks_live(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def chatty(ctx: Context) -> Any:
        ctx.logger.info("before %s", ctx.is_replaying)
        yield work(1)
        ctx.logger.info("after %s", ctx.is_replaying)
        yield work(2)

    caplog.set_level(logging.INFO, logger="durable.workflow.chatty")
    engine_for(chatty, make_log("chatty", (), done(1, "work", 1)))

    assert [r.getMessage() for r in caplog.records] == ["after False"]
    assert caplog.records[0].name == "durable.workflow.chatty"


def test_patched_is_true_live_and_writes_one_marker() -> None:
    def wf(ctx: Context) -> Any:
        flags = [ctx.patched("v2"), ctx.patched("v2")]
        yield work(1)
        return flags

    sim = Sim(wf).run()

    assert sim.result == [True, True]
    assert [e.data for e in sim.events_of("patch_marker")] == [{"patch_id": "v2"}]


def test_patched_is_false_when_replaying_an_older_run_without_the_marker() -> None:
    def wf(ctx: Context) -> Any:
        yield work(1)
        new = ctx.patched("v2")
        yield work(2)
        return [new, ctx.patched("v2")]

    # Recorded by code that had no patch: steps 1 and 2 already ran.
    log = make_log("wf", (), done(1, "work", 1), done(2, "work", 2))
    engine = engine_for(wf, log)

    assert engine.outcome == Completed([False, False])
    assert engine.take_markers() == []


def test_patched_is_true_when_replaying_a_run_that_recorded_the_marker() -> None:
    def wf(ctx: Context) -> Any:
        yield work(1)
        flag = ctx.patched("v2")
        yield work(2)
        return flag

    log = make_log(
        "wf", (), done(1, "work", 1), ("patch_marker", {"patch_id": "v2"}), done(2, "work", 2)
    )
    engine = engine_for(wf, log)

    assert engine.outcome == Completed(True)
    assert engine.take_markers() == []


def test_set_status_is_recorded_live_and_ignored_on_replay() -> None:
    def wf(ctx: Context) -> Any:
        ctx.set_status({"stage": "charging"})
        yield work(1)
        ctx.set_status("done")

    sim = Sim(wf).run()
    assert [e.data["value"] for e in sim.events_of("status_set")] == [{"stage": "charging"}, "done"]

    replayed = sim.replayed()
    assert isinstance(replayed.outcome, Completed)
    assert replayed.take_markers() == []


def test_is_replaying_is_true_until_the_last_recorded_event() -> None:
    seen: list[bool] = []

    def wf(ctx: Context) -> Any:
        seen.append(ctx.is_replaying)
        yield work(1)
        seen.append(ctx.is_replaying)
        yield work(2)
        seen.append(ctx.is_replaying)
        yield work(3)

    engine = engine_for(wf, make_log("wf", (), done(1, "work", 1), done(2, "work", 2)))

    assert seen == [True, True, False]
    assert not engine.is_replaying


def test_bookkeeping_events_at_the_end_do_not_make_the_code_replayed() -> None:
    seen: list[bool] = []

    def wf(ctx: Context) -> Any:
        yield work(1)
        seen.append(ctx.is_replaying)
        yield work(2)

    log = make_log(
        "wf", (), done(1, "work", 1), ("run_paused", {}), ("run_blocked", {"message": "x"})
    )
    engine_for(wf, log)

    assert seen == [False]


def test_events_fed_live_are_never_replaying() -> None:
    seen: list[bool] = []

    def wf(ctx: Context) -> Any:
        seen.append(ctx.is_replaying)
        yield work(1)
        seen.append(ctx.is_replaying)
        yield work(2)

    engine_for(wf, make_log("wf", (), done(1, "work", 1)), replaying=False)

    assert seen == [False, False]


def test_a_step_called_outside_any_yield_of_this_module_still_fails_the_run() -> None:
    # Guards the fixture itself: the sim's step registers what it creates.
    def wf(ctx: Context) -> Any:
        work(1)
        yield ctx.sleep(1)

    assert isinstance(engine_for(wf, make_log("wf", ())).outcome, Failed)
