from __future__ import annotations

from datetime import timedelta
from typing import Any

from sim import Script, Sim, at, engine_for, make_log, step

from durable.replay import (
    ChildCall,
    ChildFailed,
    Completed,
    Context,
    Engine,
    Failed,
    PendingChild,
    PendingTimer,
    PendingWait,
    WaitTimeout,
)


@step()
def note(x: Any) -> Any:
    return x


def test_sleep_is_pending_until_the_worker_starts_its_timer() -> None:
    def wf(ctx: Context) -> Any:
        yield ctx.sleep(timedelta(hours=1))
        return "awake"

    engine = engine_for(wf, make_log("wf", ()))
    assert engine.pending() == [PendingTimer(1, 3600.0, None, None)]

    engine = engine_for(
        wf, make_log("wf", (), ("timer_started", {"pos": 1, "fire_at": "2024-01-01T01:00:01Z"}))
    )
    assert engine.pending() == [PendingTimer(1, 3600.0, None, at(3601))]

    engine = engine_for(
        wf,
        make_log(
            "wf",
            (),
            ("timer_started", {"pos": 1, "fire_at": "2024-01-01T01:00:01Z"}),
            ("timer_fired", {"pos": 1}),
        ),
    )
    assert engine.outcome == Completed("awake")
    assert engine.pending() == []


def test_sleep_until_carries_its_target_time() -> None:
    def wf(ctx: Context) -> Any:
        yield ctx.sleep_until(at(500))
        return ctx.now()

    sim = Sim(wf).run()

    assert sim.log[1].data == {"pos": 1, "fire_at": at(500).isoformat()}
    assert sim.result == at(500)


def test_signal_wait_returns_the_payload() -> None:
    def wf(ctx: Context) -> Any:
        first = yield ctx.wait_signal("approve")
        second = yield ctx.wait_signal("approve")
        return [first, second]

    script = Script(signals=[(10, "approve", {"by": "ana"}), (20, "approve", {"by": "bo"})])
    sim = Sim(wf, script=script).run()

    assert sim.result == [{"by": "ana"}, {"by": "bo"}]


def test_wait_without_timeout_needs_no_timer() -> None:
    def wf(ctx: Context) -> Any:
        return (yield ctx.wait_signal("approve"))

    engine = engine_for(wf, make_log("wf", ()))

    assert engine.pending() == [PendingWait(1, "signal", "approve", None, None)]


def test_wait_with_timeout_gets_its_deadline_from_timer_started() -> None:
    def wf(ctx: Context) -> Any:
        return (yield ctx.wait_event("paid", timeout=60))

    engine = engine_for(wf, make_log("wf", ()))
    assert engine.pending() == [PendingWait(1, "event", "paid", 60.0, None)]

    engine = engine_for(
        wf, make_log("wf", (), ("timer_started", {"pos": 1, "fire_at": at(61).isoformat()}))
    )
    assert engine.pending() == [PendingWait(1, "event", "paid", 60.0, at(61))]


def test_wait_timeout_raises_wait_timeout_at_the_yield() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield ctx.wait_signal("approve", timeout=timedelta(days=2))
        except WaitTimeout as exc:
            return [exc.kind, exc.name, ctx.now()]

    sim = Sim(wf).run()

    assert sim.result == ["signal", "approve", at(2 * 86400)]
    assert "wait_timed_out" in sim.types()


def test_a_signal_before_the_timeout_wins() -> None:
    def wf(ctx: Context) -> Any:
        return (yield ctx.wait_signal("approve", timeout=60))

    sim = Sim(wf, script=Script(signals=[(59, "approve", "ok")])).run()

    assert sim.result == "ok"
    assert "wait_timed_out" not in sim.types()


def test_event_wait_returns_the_latched_payload() -> None:
    def wf(ctx: Context) -> Any:
        return (yield ctx.wait_event("invoice-7:paid"))

    sim = Sim(wf, script=Script(events={"invoice-7:paid": (3, {"amount": 5})})).run()

    assert sim.result == {"amount": 5}
    assert sim.log[1].data == {"pos": 1, "key": "invoice-7:paid", "payload": {"amount": 5}}


def test_event_wait_timeout_names_the_event() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield ctx.wait_event("paid", timeout=5)
        except WaitTimeout as exc:
            return str(exc)

    assert Sim(wf).run().result == "timed out waiting for event 'paid'"


def test_child_is_started_then_resolved_with_its_result() -> None:
    def wf(ctx: Context) -> Any:
        return (yield ctx.child("ship", "o-1"))

    engine = engine_for(wf, make_log("wf", ()))
    assert engine.pending() == [PendingChild(1, ChildCall("ship", ("o-1",)), None)]

    script = Script(children={"ship": lambda args: (30, ("ok", f"shipped {args[0]}"))})
    sim = Sim(wf, script=script).run()

    assert sim.result == "shipped o-1"
    assert sim.types() == ["run_started", "child_started", "child_completed", "run_completed"]


def test_child_failure_raises_child_failed() -> None:
    def wf(ctx: Context) -> Any:
        try:
            yield ctx.child("ship")
        except ChildFailed as exc:
            return [exc.workflow, exc.child_run_id, exc.status, exc.error_type, exc.message]

    script = Script(children={"ship": lambda args: (1, ("failed", "failed", "KeyError", "sku"))})
    sim = Sim(wf, script=script).run()

    assert sim.result == ["ship", "r1-1", "failed", "KeyError", "sku"]


def test_uncaught_child_failure_fails_the_parent() -> None:
    def wf(ctx: Context) -> Any:
        yield ctx.child("ship")

    script = Script(children={"ship": lambda args: (1, ("failed", "cancelled", None, None))})
    outcome = Sim(wf, script=script).run().outcome

    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, ChildFailed)
    assert "was cancelled" in str(outcome.error)


def test_child_result_is_decoded_with_the_child_workflow_name() -> None:
    seen: list[tuple[str, str]] = []

    def decode(kind: str, name: str, raw: Any) -> Any:
        seen.append((kind, name))
        return tuple(raw) if kind == "args" else raw

    def wf(ctx: Context) -> Any:
        return (yield ctx.child("ship"))

    engine = Engine(wf, workflow="wf", run_id="r1", decode=decode)
    engine.feed(
        make_log(
            "wf",
            (),
            ("child_started", {"pos": 1, "workflow": "ship", "child_run_id": "c1"}),
            ("child_completed", {"pos": 1, "child_run_id": "c1", "result": 9}),
        ),
        replaying=True,
    )

    assert engine.outcome == Completed(9)
    assert seen == [("args", "wf"), ("child", "ship")]
