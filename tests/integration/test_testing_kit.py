"""durable.testing.TestEnv on real PostgreSQL: a virtual clock that skips time for timers,
retries, wait timeouts and run timeouts; steps mocked by name; exported runs replayed;
the env's schema made and dropped; the app put back on its own database afterwards."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import durable
from durable.testing import TestEnv, replay

from .waiting import wait_for


def schemas(dsn: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'durable_test_%'")
        return {r[0] for r in rows.fetchall()}


def test_a_workflow_that_sleeps_30_days_finishes_at_once_and_the_clock_says_so(
    app: durable.App, dsn: str
) -> None:
    calls: list[int] = []

    @app.step()
    def bill(month: int) -> int:
        calls.append(month)
        return month

    @app.workflow()
    def subscription(ctx: durable.Context, months: int) -> Any:
        billed = []
        for month in range(months):
            billed.append((yield bill(month)))
            yield ctx.sleep(timedelta(days=30))
        return billed, ctx.now().isoformat()

    with TestEnv(app, dsn=dsn) as env:
        start = env.now()
        handle = app.start(subscription, 3)
        billed, _finished = handle.result(timeout=60)
        assert billed == [0, 1, 2] and calls == [0, 1, 2]
        assert env.now() - start >= timedelta(days=90)
        # the database's clock moved with it: the run's own timestamps are 90 days on
        info = app.get_run(handle.run_id)
        assert info.finished_at is not None and info.finished_at - start >= timedelta(days=90)
        assert env.schema in schemas(dsn)
    assert env.schema not in schemas(dsn)  # dropped at the end
    # the app is back on its own schema, on real time
    assert app.schema == "durable"
    assert app.list_runs().runs == []


def test_skip_by_hand_fires_what_is_due_and_no_more(app: durable.App, dsn: str) -> None:
    @app.workflow()
    def reminder(ctx: durable.Context) -> Any:
        yield ctx.sleep(timedelta(hours=1))
        ctx.set_status("first")
        yield ctx.sleep(timedelta(hours=1))
        return "done"

    with TestEnv(app, dsn=dsn, auto_skip=False) as env:
        handle = app.start(reminder)
        with pytest.raises(TimeoutError):
            handle.result(timeout=1)  # no auto-skip: it waits on real time
        env.skip(timedelta(minutes=61))

        def first() -> bool:
            return app.get_run(handle.run_id).custom_status == "first"

        wait_for(first, what="the first timer fired after the skip")
        assert app.get_run(handle.run_id).status == "waiting"
        env.skip(timedelta(hours=1))
        assert handle.result(timeout=30) == "done"
        with pytest.raises(ValueError, match="only moves forward"):
            env.skip(-1)


def test_retries_wait_timeouts_and_run_timeouts_skip_too(app: durable.App, dsn: str) -> None:
    attempts: list[int] = []

    @app.step(retry=durable.RetryPolicy(max_attempts=4, initial_interval=3600, max_interval=3600))
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("down")
        return "up"

    @app.workflow()
    def patient(ctx: durable.Context) -> Any:
        value = yield flaky()
        try:
            yield ctx.wait_signal("approve", timeout=timedelta(days=7))
        except durable.WaitTimeout:
            return value, "no answer in a week"
        return value, "approved"

    @app.workflow(timeout=timedelta(days=1))
    def late(ctx: durable.Context) -> Any:
        yield ctx.sleep(timedelta(days=2))

    with TestEnv(app, dsn=dsn) as env:
        start = env.now()
        assert app.start(patient).result(timeout=60) == ["up", "no answer in a week"]
        assert len(attempts) == 3
        assert env.now() - start >= timedelta(days=7, hours=2)
        with pytest.raises(durable.RunTimedOut):
            app.start(late).result(timeout=60)


def test_mock_step_replaces_a_step_by_name_for_the_env_only(app: durable.App, dsn: str) -> None:
    @app.step("charge", retry=durable.RetryPolicy(max_attempts=1))
    def charge(amount: int) -> str:
        raise AssertionError("the real charge must not run in this test")

    @app.workflow()
    def order(ctx: durable.Context, amount: int) -> Any:
        try:
            return (yield charge(amount))
        except durable.StepFailed as exc:
            return f"declined: {exc}"

    with TestEnv(app, dsn=dsn) as env:
        mock = env.mock_step("charge", returns="receipt-1")
        assert app.start(order, 5).result(timeout=30) == "receipt-1"
        assert mock.calls == [((5,), {})]
        env.mock_step(charge, raises=ValueError("card declined"))
        assert "card declined" in app.start(order, 7).result(timeout=30)
        seen: list[int] = []
        env.mock_step(charge, side_effect=lambda amount: seen.append(amount) or f"r{amount}")
        assert app.start(order, 9).result(timeout=30) == "r9" and seen == [9]
        with pytest.raises(ValueError, match="not a step of this App"):
            env.mock_step("refund", returns=1)
        with pytest.raises(ValueError, match="exactly one of"):
            env.mock_step("charge")
    assert app.registry.mocked == {}


def test_one_env_at_a_time(app: durable.App, dsn: str) -> None:
    with TestEnv(app, dsn=dsn), pytest.raises(RuntimeError, match="one at a time"):
        TestEnv(durable.App(dsn), dsn=dsn).__enter__()


def test_replay_of_an_exported_run_passes_and_catches_changed_code(
    app: durable.App, dsn: str, tmp_path: Path
) -> None:
    @app.step("fetch")
    def fetch(x: int) -> int:
        return x + 1

    @app.workflow(name="pipeline")
    def pipeline(ctx: durable.Context, x: int) -> Any:
        a = yield fetch(x)
        yield ctx.sleep(60)
        return (yield fetch(a))

    with TestEnv(app, dsn=dsn):
        handle = app.start(pipeline, 1)
        assert handle.result(timeout=30) == 3
        exported = app.export(handle.run_id)
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(exported))
    assert replay(app, exported) is None
    assert replay(app, path) is None

    changed = durable.App(dsn)

    @changed.step("fetch")
    def fetch2(x: int) -> int:
        return x

    @changed.workflow(name="pipeline")
    def pipeline2(ctx: durable.Context, x: int) -> Any:
        yield ctx.sleep(60)  # the step and the sleep swapped places
        return (yield fetch2(x))

    with pytest.raises(durable.NonDeterminismError, match="position 1"):
        replay(changed, path)
    with pytest.raises(ValueError, match=r"app\.export"):
        replay(app, {"format": "something else"})
    with pytest.raises(FileNotFoundError, match="no exported run"):
        replay(app, tmp_path / "missing.json")


def test_the_async_client_skips_time_too(app: durable.App, dsn: str) -> None:
    import asyncio

    @app.step("ping")
    async def ping(x: int) -> int:
        await asyncio.sleep(0)
        return x

    @app.workflow()
    def weekly(ctx: durable.Context) -> Any:
        a = yield ping(1)
        yield ctx.sleep(timedelta(days=7))
        return a + (yield ping(2))

    async def scenario() -> Any:
        handle = await app.aio.start(weekly)
        return await handle.result(timeout=30)

    with TestEnv(app, dsn=dsn) as env:
        start = env.now()
        assert asyncio.run(scenario()) == 3
        assert env.now() - start >= timedelta(days=7)


def test_an_error_in_the_test_body_still_puts_everything_back(app: durable.App, dsn: str) -> None:
    from durable import _clock

    @app.step("s")
    def s() -> int:
        return 1

    with pytest.raises(KeyError), TestEnv(app, dsn=dsn) as env:
        env.mock_step("s", returns=2)
        env.skip(timedelta(days=1))
        raise KeyError("the test failed")
    assert _clock.skew() == timedelta(0)
    assert app.registry.mocked == {} and app.schema == "durable"
    assert env.schema not in schemas(dsn)
    with TestEnv(app, dsn=dsn):  # and the next env starts cleanly
        pass


def test_auto_skip_sees_through_children_and_queues(app: durable.App, dsn: str) -> None:
    app.queue("one_at_a_time", concurrency=1)

    @app.workflow(name="nap")
    def nap(ctx: durable.Context, days: int) -> Any:
        yield ctx.sleep(timedelta(days=days))
        return days

    @app.workflow(name="parent")
    def parent(ctx: durable.Context) -> Any:
        return (yield ctx.child("nap", 2))  # the parent waits on its child only

    with TestEnv(app, dsn=dsn) as env:
        start = env.now()
        assert app.start(parent).result(timeout=30) == 2
        # the second run waits for the queue's one slot, held by the first (asleep)
        first = app.start(nap, 1, queue="one_at_a_time")
        second = app.start(nap, 3, queue="one_at_a_time")
        assert second.result(timeout=30) == 3 and first.result(timeout=30) == 1
        assert env.now() - start >= timedelta(days=6)


def test_a_skip_stops_at_every_schedule_tick_on_the_way(app: durable.App, dsn: str) -> None:
    @app.workflow(name="tick")
    def tick(ctx: durable.Context) -> Any:
        return ctx.scheduled_at.isoformat() if ctx.scheduled_at else None
        yield

    app.schedule("every_ten_minutes", tick, cron="*/10 * * * *")  # the env's worker writes it
    with TestEnv(app, dsn=dsn, auto_skip=False) as env:
        wait_for(app.list_schedules, what="the schedule written by the env's worker")
        env.skip(timedelta(hours=1))

        def six_ticks() -> bool:
            return app.list_runs(workflow="tick").total >= 6

        wait_for(six_ticks, what="a run per tick of the skipped hour")
        ticks = {r.run_id for r in app.list_runs(workflow="tick").runs}
        assert len(ticks) in (6, 7)  # the hour holds six ticks, seven if it began on one


def test_a_mock_set_while_a_step_waits_for_its_retry_answers_the_retry(
    app: durable.App, dsn: str
) -> None:
    real: list[int] = []

    @app.step("fetch", retry=durable.RetryPolicy(max_attempts=3, initial_interval=3600))
    def fetch() -> str:
        real.append(1)
        raise ConnectionError("down")

    @app.workflow()
    def reader(ctx: durable.Context) -> Any:
        return (yield fetch())

    with TestEnv(app, dsn=dsn, auto_skip=False) as env:
        handle = app.start(reader)
        wait_for(lambda: len(real) == 1, what="the first attempt")
        env.mock_step("fetch", returns="mocked")
        env.skip(timedelta(hours=2))
        assert handle.result(timeout=30) == "mocked"
        assert real == [1]


def test_async_with_closes_the_async_client_on_its_loop(app: durable.App, dsn: str) -> None:
    import asyncio

    @app.workflow()
    def nap(ctx: durable.Context) -> Any:
        yield ctx.sleep(timedelta(days=3))
        return "rested"

    def connections() -> int:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchone()
            return int(row[0]) if row else 0

    async def scenario() -> None:
        for _ in range(3):
            async with TestEnv(app, dsn=dsn):
                handle = await app.aio.start(nap)
                assert await handle.result(timeout=30) == "rested"

    before = connections()
    asyncio.run(scenario())
    # nothing left open by the three envs (a closed connection's backend exits a moment
    # after the client let it go)
    wait_for(lambda: connections() <= before, what="the envs' connections closed")
