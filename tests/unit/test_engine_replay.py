from __future__ import annotations

import gc
from typing import Any

import pytest
from sim import BASE, Script, Sim, StepError, at, decode, done, engine_for, make_log, step

from durable.replay import (
    Blocked,
    Cancelled,
    Completed,
    Context,
    Engine,
    HistoryEvent,
    PendingStep,
    StepFailed,
    TimedOut,
    WaitTimeout,
)

executed: list[Any] = []


@step()
def act(x: Any) -> Any:
    executed.append(x)
    return x


@step(max_attempts=2, retry_interval=3)
def shaky(x: Any, *, attempt: int) -> Any:
    if attempt == 1:
        raise StepError("first attempt fails")
    return x


@step(max_attempts=1)
def doomed(x: Any) -> Any:
    raise StepError("never works")


def busy(ctx: Context, n: int) -> Any:
    """A workflow that uses a bit of everything."""
    out: list[Any] = [ctx.now().isoformat(), ctx.random().randint(0, 99)]
    ctx.set_status("starting")
    out.append((yield act(n)))
    out.append((yield shaky(n + 1)))
    if ctx.patched("fast-path"):
        out.append((yield ctx.all(act("p"), ctx.sleep(2))))
    try:
        out.append((yield ctx.wait_signal("go", timeout=30)))
    except WaitTimeout:
        out.append("timeout")
    try:
        yield doomed(0)
    except StepFailed as exc:
        out.append(exc.message)
    out.append((yield ctx.any(ctx.wait_event("k"), ctx.sleep(100), act("any"))))
    out.append((yield ctx.child("kid", n)))
    ctx.set_status("done")
    out.append(str(ctx.uuid4()))
    return out


SCRIPT = Script(
    signals=[(5, "go", "went")],
    events={"k": (1, "key")},
    children={"kid": lambda args: (7, ("ok", args[0] * 2))},
)


def test_crash_at_every_batch_boundary_then_replay_produces_the_same_log() -> None:
    full = Sim(busy, 3, script=SCRIPT).run()
    assert isinstance(full.outcome, Completed)

    for cut in full.boundaries:
        resumed = full.resumed(cut).run()
        assert resumed.log == full.log, f"diverged after a crash at event {cut}"
        assert resumed.outcome == full.outcome


def test_replaying_a_finished_log_from_scratch_reaches_the_same_outcome_silently() -> None:
    full = Sim(busy, 3, script=SCRIPT).run()

    engine = full.replayed()

    assert engine.outcome == full.outcome
    assert engine.take_markers() == []
    assert engine.pending() == []
    assert engine.last_seq == len(full.log)


def test_a_replayed_batch_cut_short_makes_the_code_after_the_cut_live() -> None:
    """Why the worker must feed a loaded log in one batch: the end of a batch is "now"."""

    def wf(ctx: Context) -> Any:
        yield act(1)
        if ctx.patched("new"):
            yield doomed("new")
        return (yield act(2))

    old_log = make_log("wf", (), done(1, "act", 1), done(2, "act", 2))  # recorded before "new"
    assert engine_for(wf, old_log).outcome == Completed(2)

    engine = engine_for(wf, old_log[:2])
    engine.feed(old_log[2:], replaying=True)
    assert isinstance(engine.outcome, Blocked)


def test_pending_after_a_partial_replay_matches_the_live_engine() -> None:
    live = Sim(busy, 3, script=SCRIPT)
    while live.tick():
        rebuilt = engine_for(busy, live.log, workflow="busy")
        assert rebuilt.pending() == live.engine.pending()
        assert rebuilt.last_seq == live.engine.last_seq


def test_take_markers_returns_new_markers_once() -> None:
    def wf(ctx: Context) -> Any:
        ctx.set_status({"stage": 1})
        ctx.patched("p1")
        yield act(1)

    engine = engine_for(wf, make_log("wf", ()), replaying=False)

    assert engine.take_markers() == [
        ("status_set", {"value": {"stage": 1}}),
        ("patch_marker", {"patch_id": "p1"}),
    ]
    assert engine.take_markers() == []


def test_ignored_event_types_change_nothing() -> None:
    def wf(ctx: Context) -> Any:
        return (yield act(1))

    log = make_log(
        "wf",
        (),
        ("run_paused", {}),
        ("run_resumed", {}),
        ("status_set", {"value": "x"}),
        ("run_blocked", {"message": "old problem"}),
        ("run_retried", {"voids": []}),
        done(1, "act", 1),
    )

    assert engine_for(wf, log).outcome == Completed(1)


def test_run_retried_voids_listed_events_of_the_same_batch() -> None:
    def wf(ctx: Context) -> Any:
        return (yield act(1))

    failed = {"pos": 1, "name": "act", "attempts": 1, "error_type": "E", "message": "m"}
    log = make_log(
        "wf",
        (),
        ("step_failed", failed),
        ("run_failed", {"error_type": "StepFailed", "message": "m", "cause_pos": 1}),
        ("run_retried", {"voids": [2, 3]}),
    )
    engine = engine_for(wf, log)

    assert engine.outcome is None
    [pending] = engine.pending()
    assert isinstance(pending, PendingStep) and pending.attempt == 1


def test_voiding_an_event_fed_in_an_earlier_batch_is_an_error() -> None:
    def wf(ctx: Context) -> Any:
        return (yield act(1))

    engine = engine_for(wf, make_log("wf", ()))
    with pytest.raises(ValueError, match="from scratch"):
        engine.feed([HistoryEvent(2, "run_retried", {"voids": [1]}, BASE)], replaying=False)


def test_unknown_event_types_are_refused() -> None:
    def wf(ctx: Context) -> Any:
        return (yield act(1))

    with pytest.raises(ValueError, match="unknown event type 'step_exploded'"):
        engine_for(wf, make_log("wf", (), ("step_exploded", {"pos": 1})))


def test_an_event_before_run_started_is_refused() -> None:
    def wf(ctx: Context) -> Any:
        return (yield act(1))

    engine = Engine(wf, workflow="wf", run_id="r1", decode=decode)
    with pytest.raises(ValueError, match="before run_started"):
        engine.feed(
            [HistoryEvent(1, "step_completed", {"pos": 1, "name": "act"}, BASE)], replaying=True
        )


def test_run_started_twice_is_refused() -> None:
    def wf(ctx: Context) -> Any:
        return (yield act(1))

    engine = engine_for(wf, make_log("wf", ()))
    with pytest.raises(ValueError, match="twice"):
        started_again = make_log("wf", ())[0]
        engine.feed([HistoryEvent(2, "run_started", started_again.data, BASE)], replaying=False)


def test_run_timed_out_abandons_the_generator_without_running_steps() -> None:
    cleanup: list[str] = []

    def wf(ctx: Context) -> Any:
        try:
            yield ctx.wait_signal("never")
        finally:
            cleanup.append("finally ran")
            act("must not execute")

    executed.clear()
    sim = Sim(wf, script=Script(deadline=60)).run()

    assert sim.outcome == TimedOut()
    assert sim.types()[-1] == "run_timed_out"
    assert sim.engine.pending() == []
    assert cleanup == ["finally ran"]
    assert executed == []


def test_a_dropped_engine_closes_its_generator_without_running_steps() -> None:
    cleanup: list[bool] = []

    def wf(ctx: Context) -> Any:
        try:
            yield act("first")
        finally:
            cleanup.append(ctx.is_replaying)
            yield act("compensation")  # a yield in finally: the engine swallows the error

    executed.clear()
    engine = engine_for(wf, make_log("wf", ()))
    del engine
    gc.collect()

    assert cleanup == [True]
    assert executed == []


def test_close_does_not_raise_cancelled_into_user_code() -> None:
    caught: list[str] = []

    def wf(ctx: Context) -> Any:
        try:
            yield act(1)
        except Cancelled:
            caught.append("cancelled")

    engine = engine_for(wf, make_log("wf", ()))
    engine.close()

    assert caught == []
    assert engine.pending() == []


def test_now_and_last_seq_follow_the_events_fed() -> None:
    def wf(ctx: Context) -> Any:
        yield act(1)
        yield act(2)

    engine = engine_for(wf, make_log("wf", (), done(1, "act", 1)))

    assert engine.last_seq == 2
    assert engine.now == at(1)


def test_live_code_after_a_replayed_prefix_produces_markers_once() -> None:
    def wf(ctx: Context) -> Any:
        yield act(1)
        ctx.set_status("after one")
        yield act(2)

    full = Sim(wf).run()
    assert [e.type for e in full.log] == [
        "run_started",
        "step_completed",
        "status_set",
        "step_completed",
        "run_completed",
    ]

    crashed_before_marker = full.resumed(2)  # run_started, step_completed
    assert crashed_before_marker.held == [("status_set", {"value": "after one"})]
    assert crashed_before_marker.run().log == full.log
