"""Bad input gets one clear error and writes nothing; values jsonb refuses never reach
the database; a log the engine cannot read blocks its run instead of wedging a worker."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import durable

from .waiting import wait_status

UNSTORABLE = [float("nan"), float("inf"), -float("inf"), "a\x00b", {"k\x00": 1}, [1, float("nan")]]


def run_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM durable.runs").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("value", UNSTORABLE, ids=repr)
def test_values_jsonb_refuses_are_a_serialization_error_before_any_write(
    app: durable.App, dsn: str, value: Any
) -> None:
    @app.workflow()
    def takes(ctx: durable.Context, x: Any) -> Any:
        yield ctx.wait_signal("s")

    with pytest.raises(durable.SerializationError, match="jsonb cannot hold"):
        app.start(takes, value)
    assert run_count(dsn) == 0
    run = app.start(takes, 1)
    with pytest.raises(durable.SerializationError, match="jsonb cannot hold"):
        app.signal(run.run_id, "s", value)
    with pytest.raises(durable.SerializationError, match="jsonb cannot hold"):
        app.emit_event("k", value)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM durable.signals").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM durable.latched_events").fetchone() == (0,)


def test_a_step_returning_nan_fails_once_and_is_not_retried(app: durable.App, worker: Any) -> None:
    calls: list[int] = []

    @app.step(retry=durable.RetryPolicy(max_attempts=5, initial_interval=0.01))
    def measure() -> float:
        calls.append(1)
        return float("nan")

    @app.workflow()
    def flow(ctx: durable.Context) -> Any:
        try:
            yield measure()
        except durable.StepFailed as exc:
            return {"error_type": exc.error_type, "attempts": exc.attempts}
        return "stored"

    run = app.start(flow)
    with worker(app):
        assert run.result(timeout=30) == {
            "error_type": "durable.SerializationError",
            "attempts": 1,
        }
    assert len(calls) == 1


def test_a_workflow_returning_nan_fails_with_a_serialization_error(
    app: durable.App, worker: Any
) -> None:
    @app.workflow()
    def flow(ctx: durable.Context) -> Any:
        yield ctx.sleep(0)
        return float("nan")

    run = app.start(flow)
    with worker(app), pytest.raises(durable.RunFailed, match="SerializationError"):
        run.result(timeout=30)


def corrupt(dsn: str, run_id: str, sql: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(sql, (run_id,))


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (
            "UPDATE durable.events SET type = 'step_exploded' WHERE run_id = %s AND seq = 2",
            "event seq 2 (step_exploded)",
        ),
        (
            "UPDATE durable.events SET data = '[1, 2]' WHERE run_id = %s AND seq = 2",
            "event seq 2 (step_completed)",
        ),
        (
            "UPDATE durable.events SET data = data - 'name' WHERE run_id = %s AND seq = 2",
            "event seq 2 (step_completed)",
        ),
    ],
    ids=["unknown type", "data not an object", "missing field"],
)
def test_a_log_the_engine_cannot_read_blocks_the_run_naming_the_event(
    app: durable.App, dsn: str, worker: Any, change: str, what: str
) -> None:
    @app.step()
    def one() -> int:
        return 1

    @app.workflow()
    def flow(ctx: durable.Context) -> Any:
        yield one()
        yield ctx.wait_signal("go")
        return "done"

    @app.workflow()
    def healthy(ctx: durable.Context) -> Any:
        return (yield one())

    run = app.start(flow)
    with worker(app, cache_size=0):  # no cached engine: the run replays its log
        wait_status(app, run.run_id, "waiting")
        corrupt(dsn, run.run_id, change)
        app.signal(run.run_id, "go")
        wait_status(app, run.run_id, "blocked")
        info = app.get_run(run.run_id)
        assert info.error is not None
        message = info.error["message"]
        assert run.run_id in message and what in message, message
        # the rest of the worker carries on
        assert app.start(healthy).result(timeout=20) == 1
    # the log can still be read
    assert [e.seq for e in app.history(run.run_id)][:2] == [1, 2]


def test_start_checks_arguments_against_the_signature_before_writing(
    app: durable.App, dsn: str
) -> None:
    @app.workflow()
    def two(ctx: durable.Context, a: int, b: int = 2) -> Any:
        yield ctx.sleep(0)

    for args in ((), (1, 2, 3)):
        with pytest.raises(TypeError, match="wrong arguments for workflow"):
            app.start(two, *args)
    assert run_count(dsn) == 0
    assert app.start(two, 1).created


def test_list_runs_refuses_an_unknown_status_naming_the_statuses(app: durable.App) -> None:
    with pytest.raises(durable.InvalidArgument, match=r"unknown status 'bogus'.*pending"):
        app.list_runs(status="bogus")


def test_fork_out_of_range_is_a_durable_error(app: durable.App) -> None:
    @app.workflow()
    def flow(ctx: durable.Context) -> Any:
        yield ctx.sleep(0)

    run = app.start(flow)
    with pytest.raises(durable.InvalidArgument, match="at_seq must be between 1 and 1"):
        app.fork(run.run_id, 5)
    assert issubclass(durable.InvalidArgument, durable.DurableError)


def test_a_second_function_under_a_taken_name_is_refused_naming_both(app: durable.App) -> None:
    @app.workflow(name="order")
    def order_v1(ctx: durable.Context) -> Any:
        yield ctx.sleep(0)

    with pytest.raises(ValueError, match=r"order_v1.*order_v2"):

        @app.workflow(name="order")
        def order_v2(ctx: durable.Context) -> Any:
            yield ctx.sleep(0)

    @app.step(name="charge")
    def charge_a() -> None: ...

    with pytest.raises(ValueError, match=r"charge_a.*charge_b"):

        @app.step(name="charge")
        def charge_b() -> None: ...

    assert app.workflows["order"].fn is order_v1


def test_an_async_workflow_is_refused_at_decoration(app: durable.App) -> None:
    with pytest.raises(TypeError, match="async step"):

        @app.workflow()
        async def flow(ctx: durable.Context) -> Any:  # type: ignore[misc]
            return None


def test_start_with_the_run_id_of_another_workflow_raises_and_created_says_who_made_it(
    app: durable.App,
) -> None:
    @app.workflow()
    def first(ctx: durable.Context) -> Any:
        yield ctx.sleep(0)

    @app.workflow()
    def second(ctx: durable.Context) -> Any:
        yield ctx.sleep(0)

    made = app.start(first, run_id="r-1")
    again = app.start(first, run_id="r-1")
    assert made.created and not again.created and again.run_id == "r-1"
    with pytest.raises(durable.RunStateError, match=r"workflow 'test_.*first'"):
        app.start(second, run_id="r-1")
    assert not app.handle("r-1").created


def test_a_signal_sent_again_under_its_key_is_stored_once_even_after_it_was_consumed(
    app: durable.App, dsn: str, worker: Any
) -> None:
    @app.workflow()
    def two(ctx: durable.Context) -> Any:
        first = yield ctx.wait_signal("s")
        second = yield ctx.wait_signal("s", timeout=1.0)
        return [first, second]

    run = app.start(two)
    app.signal(run.run_id, "s", "a", idempotency_key="k1")
    app.signal(run.run_id, "s", "a again", idempotency_key="k1")  # a retry: stores nothing
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM durable.signals").fetchone() == (1,)
    with worker(app):
        wait_status(app, run.run_id, "waiting")
        # consumed by now or soon; a retry after that stores nothing either
        app.signal(run.run_id, "s", "a late retry", idempotency_key="k1")
        with pytest.raises(durable.RunFailed, match="WaitTimeout"):
            run.result(timeout=30)
    received = [e.data["payload"] for e in app.history(run.run_id) if e.type == "signal_received"]
    assert received == ["a"]
