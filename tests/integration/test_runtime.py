"""Durable execution end to end on real PostgreSQL: steps, retries, timers, results."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta
from typing import Any

import psycopg
import pydantic
import pytest

import durable


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Order(pydantic.BaseModel):
    id: str
    cents: int


def count_rows(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])


def test_workflow_runs_steps_and_returns_result(app: durable.App, worker: Any) -> None:
    @app.step()
    def add(a: int, b: int) -> int:
        return a + b

    @app.workflow()
    def sums(ctx: durable.Context, n: int) -> list[int]:
        out = []
        for i in range(n):
            out.append((yield add(i, i)))
        return out

    run = app.start(sums, 4)
    with worker(app):
        assert run.result(timeout=30) == [0, 2, 4, 6]
    assert run.status() == "completed"
    types = [e.type for e in app.history(run.run_id)]
    assert types[0] == "run_started" and types[-1] == "run_completed"
    assert types.count("step_completed") == 4


def test_step_called_outside_workflow_just_runs(app: durable.App) -> None:
    @app.step()
    def double(x: int) -> int:
        return 2 * x

    assert double(21) == 42


def test_workflow_decorator_rejects_non_generator(app: durable.App) -> None:
    with pytest.raises(TypeError, match="generator function"):

        @app.workflow()
        def plain(ctx: durable.Context) -> int:
            return 1


def test_retry_succeeds_on_a_later_attempt_and_attempts_are_logged(
    app: durable.App, worker: Any
) -> None:
    calls = {"n": 0}

    @app.step(retry=durable.RetryPolicy(max_attempts=4, initial_interval=0.05))
    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("not yet")
        return "ok"

    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        return (yield flaky())

    run = app.start(wf)
    with worker(app):
        assert run.result(timeout=30) == "ok"
    history = app.history(run.run_id)
    failed = [e for e in history if e.type == "step_attempt_failed"]
    assert [e.data["attempt"] for e in failed] == [1, 2]
    assert failed[0].data["error_type"] == "ConnectionError"
    assert calls["n"] == 3


def test_exhausted_retries_raise_step_failed_in_workflow(app: durable.App, worker: Any) -> None:
    @app.step(retry=durable.RetryPolicy(max_attempts=2, initial_interval=0.01))
    def broken() -> None:
        raise ValueError("card declined")

    @app.workflow()
    def wf(ctx: durable.Context) -> dict[str, Any]:
        try:
            yield broken()
        except durable.StepFailed as exc:
            return {
                "step": exc.step,
                "type": exc.error_type,
                "msg": exc.message,
                "attempts": exc.attempts,
            }
        return {}

    run = app.start(wf)
    with worker(app):
        out = run.result(timeout=30)
    assert out == {"step": out["step"], "type": "ValueError", "msg": "card declined", "attempts": 2}
    assert out["step"].endswith("broken")


def test_uncaught_step_failure_fails_the_run(app: durable.App, worker: Any) -> None:
    @app.step(retry=None)
    def broken() -> None:
        raise KeyError("nope")

    @app.workflow()
    def wf(ctx: durable.Context) -> None:
        yield broken()

    run = app.start(wf)
    with worker(app), pytest.raises(durable.RunFailed) as info:
        run.result(timeout=30)
    assert info.value.error_type == "durable.StepFailed"
    assert run.status() == "failed"
    assert app.get_run(run.run_id).error is not None


def test_non_retryable_error_is_not_retried(app: durable.App, worker: Any) -> None:
    calls = {"n": 0}

    @app.step(
        retry=durable.RetryPolicy(
            max_attempts=5, initial_interval=0.01, non_retryable=(PermissionError,)
        )
    )
    def forbidden() -> None:
        calls["n"] += 1
        raise PermissionError("no")

    @app.workflow()
    def wf(ctx: durable.Context) -> int:
        try:
            yield forbidden()
        except durable.StepFailed as exc:
            return exc.attempts
        return 0

    run = app.start(wf)
    with worker(app):
        assert run.result(timeout=30) == 1
    assert calls["n"] == 1


def test_step_timeout_is_a_failed_attempt(app: durable.App, worker: Any) -> None:
    release = threading.Event()

    @app.step(retry=None, timeout=0.2)
    def slow() -> None:
        release.wait(10)

    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        try:
            yield slow()
        except durable.StepFailed as exc:
            return exc.error_type
        return "no"

    run = app.start(wf)
    try:
        with worker(app):
            assert run.result(timeout=30) == "TimeoutError"
    finally:
        release.set()


def test_durable_sleep_completes(app: durable.App, worker: Any) -> None:
    @app.workflow()
    def napper(ctx: durable.Context) -> float:
        before = ctx.now()
        yield ctx.sleep(0.3)
        return (ctx.now() - before).total_seconds()

    run = app.start(napper)
    with worker(app):
        slept = run.result(timeout=30)
    assert slept >= 0.3
    types = [e.type for e in app.history(run.run_id)]
    assert "timer_started" in types and "timer_fired" in types


def test_start_with_existing_idempotency_key_returns_same_run(app: durable.App) -> None:
    @app.workflow()
    def wf(ctx: durable.Context, x: int) -> int:
        return x
        yield

    a = app.start(wf, 1, idempotency_key="k-1")
    b = app.start(wf, 2, idempotency_key="k-1")
    c = app.start(wf, 3, run_id=a.run_id)
    assert a.run_id == b.run_id == c.run_id
    assert app.get_run(a.run_id).args == [1]


def test_unencodable_argument_raises_and_writes_nothing(app: durable.App, dsn: str) -> None:
    @app.workflow()
    def wf(ctx: durable.Context, x: Any) -> None:
        return None
        yield

    with pytest.raises(durable.SerializationError, match="object"):
        app.start(wf, object())
    assert count_rows(dsn, "SELECT count(*) FROM durable.runs") == 0
    assert count_rows(dsn, "SELECT count(*) FROM durable.events") == 0


def test_unknown_workflow_name_is_a_clear_error(app: durable.App) -> None:
    with pytest.raises(durable.WorkflowNotFound, match="nope"):
        app.start("nope")


def test_pydantic_and_dataclass_values_round_trip(app: durable.App, worker: Any) -> None:
    @app.step()
    def make_point(order: Order) -> Point:
        return Point(order.cents, len(order.id))

    @app.workflow()
    def wf(ctx: durable.Context, order: Order) -> dict[str, Any]:
        point = yield make_point(order)
        assert isinstance(point, Point)
        return {"sum": point.x + point.y, "order_type": type(order).__name__}

    run = app.start(wf, Order(id="abc", cents=5))
    with worker(app):
        assert run.result(timeout=30) == {"sum": 8, "order_type": "Order"}


def test_pickle_codec_stores_arbitrary_objects(pickle_app: durable.App, worker: Any) -> None:
    app = pickle_app

    class Box:
        def __init__(self, v: int) -> None:
            self.v = v

    @app.step()
    def boxed(v: int) -> Box:
        return Box(v)

    @app.workflow()
    def wf(ctx: durable.Context, n: int) -> int:
        box = yield boxed(n)
        return box.v + 1

    run = app.start(wf, 41)
    with worker(app):
        assert run.result(timeout=30) == 42


def test_step_result_that_cannot_be_encoded_fails_the_step(app: durable.App, worker: Any) -> None:
    @app.step(retry=durable.RetryPolicy(max_attempts=3, initial_interval=0.01))
    def bad() -> object:
        return object()

    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        try:
            yield bad()
        except durable.StepFailed as exc:
            return f"{exc.error_type}/{exc.attempts}"
        return ""

    run = app.start(wf)
    with worker(app):
        assert run.result(timeout=30) == "durable.SerializationError/1"


def test_result_timeout_raises_timeout_error(app: durable.App) -> None:
    @app.workflow()
    def wf(ctx: durable.Context) -> None:
        yield ctx.sleep(60)

    run = app.start(wf)
    with pytest.raises(TimeoutError):
        run.result(timeout=0.3)


def test_workflow_timeout_ends_run_timed_out(app: durable.App, env: Any) -> None:
    @app.workflow(timeout=timedelta(days=3))
    def stuck(ctx: durable.Context) -> None:
        yield ctx.wait_signal("never", timeout=timedelta(days=30))

    start = env.now()
    run = app.start(stuck)
    with pytest.raises(durable.RunTimedOut):
        run.result(timeout=30)  # the virtual clock skips the three days
    assert run.status() == "timed_out"
    assert timedelta(days=3) <= env.now() - start < timedelta(days=30)


def test_deferred_start_waits_until_start_at(app: durable.App, env: Any) -> None:
    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        return ctx.now().isoformat()
        yield

    begin = env.now() + timedelta(hours=6)
    run = app.start(wf, start_at=begin)
    assert run.status() == "pending"
    run.result(timeout=30)
    info = app.get_run(run.run_id)
    assert info.started_at is not None and info.started_at >= begin


def test_custom_status_is_visible(app: durable.App, worker: Any) -> None:
    @app.step()
    def noop() -> None:
        return None

    @app.workflow()
    def wf(ctx: durable.Context) -> None:
        ctx.set_status({"phase": "one"})
        yield noop()
        ctx.set_status({"phase": "two"})
        yield ctx.wait_signal("go")

    run = app.start(wf)
    with worker(app):
        for _ in range(200):
            if app.get_run(run.run_id).custom_status == {"phase": "two"}:
                break
            threading.Event().wait(0.05)
        assert app.get_run(run.run_id).custom_status == {"phase": "two"}


def test_deterministic_helpers_are_stable_across_replay(app: durable.App, worker: Any) -> None:
    @app.step()
    def noop() -> None:
        return None

    seen: list[tuple[str, float]] = []

    @app.workflow()
    def wf(ctx: durable.Context) -> list[Any]:
        u = str(ctx.uuid4())
        r = ctx.random().random()
        seen.append((u, r))
        yield noop()
        yield ctx.sleep(0.05)  # the run is released and replayed from the cache or log
        return [u, r]

    run = app.start(wf)
    with worker(app, cache_size=0):  # no cache: every wake-up is a full replay
        u, r = run.result(timeout=30)
    assert all(s == (u, r) for s in seen) and len(seen) >= 2


def test_workers_claim_only_workflows_they_register(dsn: str, worker: Any) -> None:
    """A worker that does not know a workflow leaves its runs alone (rolling deploys,
    workers with different sets of workflows on one database)."""
    starter = durable.App(dsn)
    other = durable.App(dsn)

    @starter.workflow(name="known-only-here")
    def wf(ctx: durable.Context) -> int:
        return 7
        yield

    @other.workflow(name="something-else")
    def wf2(ctx: durable.Context) -> int:
        return 1
        yield

    run = starter.start(wf)
    try:
        with worker(other):
            assert not _finishes(run, 0.5)
            assert run.status() == "pending"
        with worker(starter):
            assert run.result(timeout=30) == 7
    finally:
        starter.close()
        other.close()


def _finishes(run: durable.RunHandle, seconds: float) -> bool:
    try:
        run.result(timeout=seconds)
    except TimeoutError:
        return False
    return True


def test_list_runs_includes_args_and_result(app: durable.App, worker: Any) -> None:
    @app.workflow()
    def echo(ctx: durable.Context, x: int) -> int:
        return x + 1
        yield

    run = app.start(echo, 41)
    with worker(app):
        run.result(timeout=30)
    page = app.list_runs(workflow=echo.durable_name)  # type: ignore[attr-defined]
    assert page.total == 1
    assert page.runs[0].args == [41] and page.runs[0].result == 42


def test_malformed_dsn_is_a_config_error() -> None:
    with durable.App("not a dsn at all") as bad, pytest.raises(durable.ConfigError, match="DSN"):
        bad.list_runs()


def test_many_threads_wait_for_results_on_one_connection(app: durable.App, worker: Any) -> None:
    """result() shares one LISTEN connection per App: more waiters than the server has
    connections (max_connections defaults to 100) still all get their results."""

    @app.workflow()
    def gated(ctx: durable.Context, i: int) -> int:
        yield ctx.wait_signal("go")
        return i

    runs = [app.start(gated, i) for i in range(120)]
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def wait(i: int, handle: durable.RunHandle) -> None:
        try:
            results[i] = handle.result(timeout=60)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=wait, args=(i, h)) for i, h in enumerate(runs)]
    for t in threads:
        t.start()
    with worker(app, concurrency=8):
        for h in runs:
            app.signal(h.run_id, "go")
        for t in threads:
            t.join(90)
    assert not errors
    assert results == {i: i for i in range(120)}


@pytest.mark.parametrize(("cache_size", "expected_top_runs"), [(1000, 1), (0, 4)])
def test_sticky_cache_wakes_without_replaying(
    app: durable.App, worker: Any, cache_size: int, expected_top_runs: int
) -> None:
    """A run that waits and wakes is resumed from the worker's cached generator: code
    before its first yield runs once. Without the cache every wake-up is a full replay."""
    top_runs = {"n": 0}

    @app.workflow()
    def napper(ctx: durable.Context) -> int:
        top_runs["n"] += 1
        for _ in range(3):
            yield ctx.sleep(0.05)
        return top_runs["n"]

    run = app.start(napper)
    with worker(app, cache_size=cache_size, concurrency=1):
        run.result(timeout=30)
    assert top_runs["n"] == expected_top_runs


def test_start_many_creates_every_run_in_one_statement(app: durable.App, worker: Any) -> None:
    @app.step()
    def double(x: int) -> int:
        return 2 * x

    @app.workflow(name="doubler")
    def doubler(ctx: durable.Context, x: int) -> Any:
        return (yield double(x))

    @app.workflow(name="other_wf")
    def other_wf(ctx: durable.Context) -> Any:
        return None
        yield

    handles = app.start_many(doubler, [(i,) for i in range(200)])
    assert len({h.run_id for h in handles}) == 200
    # idempotency: keys that exist name the existing runs, in order; new ones are created
    keyed = app.start_many(doubler, [(1,), (2,)], idempotency_keys=["k1", "k2"])
    again = app.start_many(doubler, [(1,), (3,)], idempotency_keys=["k1", "k3"])
    assert again[0].run_id == keyed[0].run_id and again[1].run_id != keyed[1].run_id
    with worker(app, concurrency=8):
        assert [h.result(timeout=60) for h in handles[:5]] == [0, 2, 4, 6, 8]
        assert sum(h.result(timeout=60) for h in handles) == 2 * sum(range(200))
    # bad input: one line, and nothing written
    total = app.list_runs().total
    with pytest.raises(TypeError, match="wrong arguments for workflow 'doubler'"):
        app.start_many(doubler, [(1,), (1, 2)])
    with pytest.raises(TypeError, match="tuple or list"):
        app.start_many(doubler, [5])
    with pytest.raises(ValueError, match="one entry per run"):
        app.start_many(doubler, [(1,)], run_ids=["a", "b"])
    with pytest.raises(durable.SerializationError):
        app.start_many(doubler, [(1,), (float("nan"),)])
    taken = app.start(other_wf, run_id="taken")
    with pytest.raises(durable.RunStateError, match="no run of this batch was started"):
        app.start_many(doubler, [(1,), (2,)], run_ids=["fresh-1", taken.run_id])
    assert app.list_runs().total == total + 1  # only "taken"
    assert app.start_many(doubler, []) == []
