"""Talking to runs on real PostgreSQL: signals, events, pause/resume/cancel, children,
parallel steps, continue-as-new."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import durable


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll an observable condition with a deadline (a database state, not a sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def status_is(app: durable.App, run_id: str, status: str) -> Callable[[], bool]:
    return lambda: app.get_run(run_id).status == status


# -- signals -----------------------------------------------------------------------


def test_signal_sent_before_wait_is_delivered(app: durable.App, worker: Any) -> None:
    @app.workflow()
    def wf(ctx: durable.Context) -> Any:
        return (yield ctx.wait_signal("approve"))

    run = app.start(wf)
    app.signal(run.run_id, "approve", {"by": "ana"})
    with worker(app):
        assert run.result(timeout=30) == {"by": "ana"}


def test_signals_are_fifo_per_name_and_each_delivered_once(app: durable.App, worker: Any) -> None:
    @app.workflow()
    def wf(ctx: durable.Context, n: int) -> list[Any]:
        got = []
        for _ in range(n):
            got.append((yield ctx.wait_signal("item")))
        return got

    run = app.start(wf, 5)
    with worker(app):
        wait_for(status_is(app, run.run_id, "waiting"))
        for i in range(5):
            app.signal(run.run_id, "item", i)
        assert run.result(timeout=30) == [0, 1, 2, 3, 4]


def test_wait_signal_timeout_raises_wait_timeout(app: durable.App, env: Any) -> None:
    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        try:
            yield ctx.wait_signal("never", timeout=timedelta(days=7))
        except durable.WaitTimeout:
            return "timed out"
        return "signalled"

    start = env.now()
    assert app.start(wf).result(timeout=30) == "timed out"
    assert env.now() - start >= timedelta(days=7)


def test_signal_to_ended_or_unknown_run_is_an_error(app: durable.App, worker: Any) -> None:
    @app.workflow()
    def wf(ctx: durable.Context) -> int:
        return 1
        yield

    run = app.start(wf)
    with worker(app):
        run.result(timeout=30)
    with pytest.raises(durable.RunNotActive):
        app.signal(run.run_id, "x")
    with pytest.raises(durable.RunNotFound):
        app.signal("no-such-run", "x")


def test_concurrent_signals_from_many_threads_are_each_consumed_once(
    app: durable.App, worker: Any
) -> None:
    total = 60

    @app.workflow()
    def collector(ctx: durable.Context, n: int) -> list[int]:
        got = []
        for _ in range(n):
            got.append((yield ctx.wait_signal("n")))
        return got

    run = app.start(collector, total)

    def send(start: int) -> None:
        for i in range(start, total, 4):
            app.signal(run.run_id, "n", i)

    with worker(app):
        threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = run.result(timeout=60)
    assert sorted(got) == list(range(total))


# -- events --------------------------------------------------------------------------


def test_event_is_latched_first_emission_wins(app: durable.App, worker: Any) -> None:
    @app.workflow()
    def waiter(ctx: durable.Context, key: str) -> Any:
        return (yield ctx.wait_event(key))

    early = app.start(waiter, "k")
    with worker(app):
        wait_for(status_is(app, early.run_id, "waiting"))
        assert app.emit_event("k", {"v": 1}) is True
        assert app.emit_event("k", {"v": 2}) is False
        late = app.start(waiter, "k")
        assert early.result(timeout=30) == {"v": 1}
        assert late.result(timeout=30) == {"v": 1}


def test_wait_event_timeout(app: durable.App, env: Any) -> None:
    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        try:
            yield ctx.wait_event("absent", timeout=timedelta(hours=12))
        except durable.WaitTimeout:
            return "timeout"
        return "event"

    assert app.start(wf).result(timeout=30) == "timeout"


# -- pause, resume, cancel -----------------------------------------------------------


def test_pause_holds_a_run_and_resume_continues_it(app: durable.App, worker: Any) -> None:
    @app.step()
    def noop(i: int) -> int:
        return i

    @app.workflow()
    def wf(ctx: durable.Context) -> int:
        yield ctx.wait_signal("go")
        total = 0
        for i in range(3):
            total += yield noop(i)
        return total

    run = app.start(wf)
    app.pause(run.run_id)
    assert run.status() == "paused"
    app.signal(run.run_id, "go")
    with worker(app):
        # A paused run is not picked up, whatever arrives meanwhile.
        assert not _finishes_within(run, 0.5)
        assert run.status() == "paused"
        app.resume(run.run_id)
        assert run.result(timeout=30) == 3
    types = [e.type for e in app.history(run.run_id)]
    assert types.index("run_paused") < types.index("run_resumed") < types.index("signal_received")


def _finishes_within(run: durable.RunHandle, seconds: float) -> bool:
    try:
        run.result(timeout=seconds)
    except TimeoutError:
        return False
    return True


def test_cancel_waiting_run_runs_compensation(app: durable.App, worker: Any) -> None:
    done: list[str] = []

    @app.step()
    def charge() -> str:
        return "receipt-1"

    @app.step()
    def refund(receipt: str) -> None:
        done.append(receipt)

    @app.workflow()
    def order(ctx: durable.Context) -> None:
        receipt = yield charge()
        try:
            yield ctx.wait_signal("approve")
        except durable.Cancelled:
            yield refund(receipt)
            raise

    run = app.start(order)
    with worker(app):
        wait_for(status_is(app, run.run_id, "waiting"))
        app.cancel(run.run_id, reason="customer asked")
        with pytest.raises(durable.RunCancelled):
            run.result(timeout=30)
    assert done == ["receipt-1"]
    assert run.status() == "cancelled"


def test_cancel_paused_run_raises_cancelled_inside(app: durable.App, worker: Any) -> None:
    @app.step()
    def cleanup() -> str:
        return "cleaned"

    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        try:
            yield ctx.sleep(3600)
        finally:
            yield cleanup()
        return "unreachable"

    run = app.start(wf)
    with worker(app):
        wait_for(status_is(app, run.run_id, "waiting"))
        app.pause(run.run_id)
        wait_for(status_is(app, run.run_id, "paused"))
        app.cancel(run.run_id)
        with pytest.raises(durable.RunCancelled):
            run.result(timeout=30)
    assert any(e.type == "step_completed" for e in app.history(run.run_id))


def test_cancel_before_start_ends_run(app: durable.App) -> None:
    @app.workflow()
    def wf(ctx: durable.Context) -> None:
        yield ctx.sleep(1)

    run = app.start(wf)
    app.cancel(run.run_id)
    assert run.status() == "cancelled"
    with pytest.raises(durable.RunCancelled):
        run.result(timeout=5)


def test_bare_except_exception_does_not_swallow_cancel(app: durable.App, worker: Any) -> None:
    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        try:
            yield ctx.wait_signal("x")
        except Exception:
            return "swallowed"
        return "no"

    run = app.start(wf)
    with worker(app):
        wait_for(status_is(app, run.run_id, "waiting"))
        app.cancel(run.run_id)
        with pytest.raises(durable.RunCancelled):
            run.result(timeout=30)


# -- children ------------------------------------------------------------------------


def test_child_result_and_failure_reach_the_parent(app: durable.App, worker: Any) -> None:
    @app.workflow()
    def child(ctx: durable.Context, x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x * 10
        yield

    @app.workflow()
    def parent(ctx: durable.Context) -> dict[str, Any]:
        ok = yield ctx.child(child, 4)
        try:
            yield ctx.child(child, -1)
        except durable.ChildFailed as exc:
            return {"ok": ok, "failed": exc.error_type}
        return {"ok": ok}

    run = app.start(parent)
    with worker(app):
        assert run.result(timeout=30) == {"ok": 40, "failed": "ValueError"}
    children = app.list_runs(workflow=child.durable_name).runs  # type: ignore[attr-defined]
    assert {c.parent_run_id for c in children} == {run.run_id}


def test_cancelling_parent_cancels_children(app: durable.App, worker: Any) -> None:
    @app.workflow()
    def sleeper(ctx: durable.Context) -> None:
        yield ctx.wait_signal("never")

    @app.workflow()
    def parent(ctx: durable.Context) -> None:
        yield ctx.child(sleeper)

    run = app.start(parent)
    with worker(app):
        wait_for(lambda: app.list_runs(workflow=sleeper.durable_name).total == 1)  # type: ignore[attr-defined]
        kid = app.list_runs(workflow=sleeper.durable_name).runs[0]  # type: ignore[attr-defined]
        wait_for(status_is(app, kid.run_id, "waiting"))
        app.cancel(run.run_id)
        with pytest.raises(durable.RunCancelled):
            run.result(timeout=30)
        wait_for(status_is(app, kid.run_id, "cancelled"))


# -- parallelism ---------------------------------------------------------------------


def test_all_runs_steps_concurrently_and_keeps_argument_order(
    app: durable.App, worker: Any
) -> None:
    barrier = threading.Barrier(3, timeout=10)

    @app.step()
    def meet(i: int) -> int:
        barrier.wait()  # only passes if all three run at the same time
        return i

    @app.workflow()
    def wf(ctx: durable.Context) -> list[int]:
        return (yield ctx.all(meet(2), meet(0), meet(1)))

    run = app.start(wf)
    with worker(app, concurrency=4):
        assert run.result(timeout=30) == [2, 0, 1]


def test_any_with_timer_is_a_timeout_pattern(app: durable.App, worker: Any) -> None:
    release = threading.Event()

    @app.step(retry=None)
    def slow() -> str:
        release.wait(10)
        return "slow"

    @app.step()
    def fast() -> str:
        return "fast"

    @app.workflow()
    def wf(ctx: durable.Context) -> list[Any]:
        a = yield ctx.any(slow(), ctx.sleep(0.2))
        b = yield ctx.any(fast(), ctx.sleep(30))
        return [list(a), list(b)]

    run = app.start(wf)
    try:
        with worker(app):
            assert run.result(timeout=30) == [[1, None], [0, "fast"]]
    finally:
        release.set()


def test_all_raises_first_failure(app: durable.App, worker: Any) -> None:
    @app.step(retry=None)
    def boom() -> None:
        raise RuntimeError("boom")

    @app.step()
    def fine() -> int:
        return 1

    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        try:
            yield ctx.all(fine(), boom())
        except durable.StepFailed as exc:
            return exc.message
        return "no"

    run = app.start(wf)
    with worker(app):
        assert run.result(timeout=30) == "boom"


# -- continue as new -----------------------------------------------------------------


def test_continue_as_new_restarts_history_and_carries_signals(
    app: durable.App, worker: Any
) -> None:
    @app.step()
    def noop(i: int) -> int:
        return i

    @app.workflow()
    def looper(ctx: durable.Context, n: int, acc: list[Any]) -> list[Any]:
        yield noop(n)
        if n < 3:
            yield ctx.continue_as_new(n + 1, acc)
        got = yield ctx.wait_signal("late")
        return [*acc, n, got]

    run = app.start(looper, 0, [])
    app.signal(run.run_id, "late", "carried")
    with worker(app):
        assert run.result(timeout=30) == [3, "carried"]
    history = app.history(run.run_id)
    assert history[0].type == "run_started" and history[0].data["args"][0] == 3
