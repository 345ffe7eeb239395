from __future__ import annotations

from typing import Any

from sim import BASE, Script, Sim, done, engine_for, make_log, step

from durable.replay import (
    Cancelled,
    CancelledOutcome,
    Completed,
    Context,
    Failed,
    HistoryEvent,
    PendingStep,
    PendingTimer,
)


@step()
def charge(x: Any) -> Any:
    return f"receipt-{x}"


@step()
def refund(receipt: Any) -> Any:
    return f"refunded {receipt}"


def test_cancel_propagating_out_of_the_workflow_ends_it_cancelled() -> None:
    def wf(ctx: Context) -> Any:
        yield charge(1)
        yield ctx.wait_signal("approve")

    sim = Sim(wf, script=Script(cancels=[(10, "customer asked")])).run()

    assert sim.outcome == CancelledOutcome("customer asked")
    assert sim.types()[-2:] == ["cancel_requested", "run_cancelled"]


def test_cancel_is_raised_at_the_current_yield_and_compensation_runs() -> None:
    def wf(ctx: Context) -> Any:
        receipt = yield charge(1)
        try:
            yield ctx.wait_signal("approve")
        except Cancelled:
            yield refund(receipt)
            raise

    sim = Sim(wf, script=Script(cancels=[(10, None)])).run()

    assert isinstance(sim.outcome, CancelledOutcome)
    assert [e.data["result"] for e in sim.events_of("step_completed")] == [
        "receipt-1",
        "refunded receipt-1",
    ]


def test_cancel_abandons_everything_pending() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield ctx.all(charge(1), ctx.sleep(60))
        except Cancelled:
            yield ctx.sleep(1)

    log = make_log(
        "wf",
        (),
        ("timer_started", {"pos": 2, "fire_at": "2024-01-01T00:01:00Z"}),
        ("cancel_requested", {"reason": "stop"}),
    )
    engine = engine_for(wf, log)

    assert engine.pending() == [PendingTimer(3, 1.0, None, None)]


def test_a_workflow_that_catches_cancel_continues_normally() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield ctx.sleep(100)
        except Cancelled as exc:
            note = exc.reason
        value = yield charge(2)
        return [note, value]

    sim = Sim(wf, script=Script(cancels=[(5, "why")])).run()

    assert sim.result == ["why", "receipt-2"]


def test_except_exception_does_not_swallow_cancel() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield ctx.sleep(100)
        except Exception:
            return "swallowed"

    assert isinstance(Sim(wf, script=Script(cancels=[(5, None)])).run().outcome, CancelledOutcome)


def test_results_of_steps_abandoned_by_cancel_are_ignored() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield charge(1)
        except Cancelled:
            return (yield refund("nothing"))

    log = make_log(
        "wf",
        (),
        ("cancel_requested", {"reason": None}),
        done(1, "charge", "late receipt"),
        done(2, "refund", "ok"),
    )

    assert engine_for(wf, log).outcome == Completed("ok")


def test_cancel_fed_before_the_generator_started_ends_the_run_cancelled() -> None:
    started: list[bool] = []

    def wf(ctx: Context) -> Any:
        started.append(True)
        yield charge(1)

    engine = engine_for(wf, [HistoryEvent(1, "cancel_requested", {"reason": "too late"}, BASE)])

    assert engine.outcome == CancelledOutcome("too late")
    assert started == []


def test_cancel_after_the_workflow_finished_changes_nothing() -> None:
    def wf(ctx: Context) -> Any:
        return (yield charge(1))

    log = make_log("wf", (), done(1, "charge", "r"), ("cancel_requested", {"reason": None}))

    assert engine_for(wf, log).outcome == Completed("r")


def test_each_cancel_request_is_raised_again() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield ctx.sleep(100)
        except Cancelled:
            try:
                yield charge("compensate")
            except Cancelled:
                return "cancelled twice"

    log = make_log(
        "wf", (), ("cancel_requested", {"reason": "1"}), ("cancel_requested", {"reason": "2"})
    )

    assert engine_for(wf, log).outcome == Completed("cancelled twice")


def test_an_error_raised_while_handling_cancel_fails_the_run() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield ctx.sleep(100)
        except Cancelled as exc:
            raise RuntimeError("cleanup failed") from exc

    outcome = Sim(wf, script=Script(cancels=[(1, None)])).run().outcome

    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, RuntimeError)


def test_pending_step_is_gone_after_cancel() -> None:
    def wf(ctx: Context) -> Any:
        yield charge(1)

    engine = engine_for(wf, make_log("wf", ()))
    assert isinstance(engine.pending()[0], PendingStep)

    engine.feed(
        [HistoryEvent(2, "cancel_requested", {"reason": None}, BASE)],
        replaying=False,
    )
    assert engine.pending() == []
    assert engine.outcome == CancelledOutcome(None)
