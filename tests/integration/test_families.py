"""Parents and children under concurrency: every child's end reaches its parent, a
cancel that cascades reaches the parent as a cancel, and a notification that reaches a
run before the worker activated it never strands it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import durable
from durable.worker._driver import RunDriver

from .waiting import wait_for


def test_every_childs_end_reaches_its_parent_with_many_parents_at_once(
    app: durable.App, worker: Any
) -> None:
    @app.step()
    def work(i: int) -> int:
        return i * i

    @app.workflow(name="kid")
    def kid(ctx: durable.Context, i: int) -> Any:
        return (yield work(i))

    @app.workflow(name="fan")
    def fan(ctx: durable.Context) -> Any:
        results = yield ctx.all(*[ctx.child("kid", i) for i in range(10)])
        return sum(results)

    with worker(app, concurrency=8):
        for _round in range(3):
            parents = [app.start(fan) for _ in range(4)]
            for p in parents:
                assert p.result(timeout=60) == sum(i * i for i in range(10))


def test_cancelling_a_parent_while_its_children_finish_ends_it_cancelled(
    app: durable.App, worker: Any
) -> None:
    @app.workflow(name="quick_kid")
    def quick_kid(ctx: durable.Context, i: int) -> Any:
        yield ctx.sleep(0.01 * i)
        return i

    @app.workflow(name="stuck_kid")
    def stuck_kid(ctx: durable.Context) -> Any:
        yield ctx.wait_signal("never")

    @app.workflow(name="parent")
    def parent(ctx: durable.Context) -> Any:
        kids = [ctx.child("quick_kid", i) for i in range(6)]
        # "elsewhere" is registered by no running worker: that child stays pending, so
        # the cancel ends it at once, in the cancel's own transaction
        return (yield ctx.all(*kids, ctx.child("stuck_kid"), ctx.child("elsewhere")))

    with worker(app, concurrency=8):
        for _round in range(5):
            run = app.start(parent)

            def first_child_done(run_id: str = run.run_id) -> bool:
                return any(e.type == "child_completed" for e in app.history(run_id))

            wait_for(first_child_done, what="a child_completed in the parent's log")
            app.cancel(run.run_id, "enough")
            with pytest.raises(durable.RunCancelled):
                run.result(timeout=30)


def test_a_nudge_before_activation_does_not_strand_a_fresh_run(
    app: durable.App, worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.step()
    def one() -> int:
        return 1

    @app.workflow()
    def flow(ctx: durable.Context) -> Any:
        a = yield one()
        b = yield one()
        return a + b

    real_activate = RunDriver.activate
    raced = threading.Event()

    def tick_first(self: RunDriver, act: Any, history: Any) -> None:
        # The run's start notification reached the listener after the claim put the run
        # in `held` and before its activation ran: the tick comes first.
        act.nudged = True
        self.tick(act)
        raced.set()
        real_activate(self, act, history)

    monkeypatch.setattr(RunDriver, "activate", tick_first)
    with worker(app):
        runs = [app.start(flow) for _ in range(20)]
        for run in runs:
            assert run.result(timeout=30) == 2
    assert raced.is_set()
