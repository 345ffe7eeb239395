"""Async steps on the worker's event loop, and attempts of a step that never overlap."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

import durable


def test_async_step_result_is_recorded_and_returned(app: durable.App, worker: Any) -> None:
    seen: list[str] = []

    @app.step()
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0.01)
        seen.append(threading.current_thread().name)
        return a + b

    @app.workflow()
    def wf(ctx: durable.Context) -> list[int]:
        x = yield add(1, 2)
        y = yield add(x, 10)
        return [x, y]

    run = app.start(wf)
    with worker(app):
        assert run.result(timeout=30) == [3, 13]
    completed = [e for e in app.history(run.run_id) if e.type == "step_completed"]
    assert [e.data["result"] for e in completed] == [3, 13]
    assert seen == ["durable-asyncio", "durable-asyncio"]  # the worker's own loop thread


def test_async_steps_in_all_run_concurrently(app: durable.App, worker: Any) -> None:
    barrier = asyncio.Barrier(3)  # bound to the worker's loop at first use

    @app.step(retry=None)
    async def meet(i: int) -> int:
        # Only passes if all three are awaited at the same time.
        await asyncio.wait_for(barrier.wait(), timeout=10)
        return i

    @app.workflow()
    def wf(ctx: durable.Context) -> list[int]:
        return (yield ctx.all(meet(0), meet(1), meet(2)))

    run = app.start(wf)
    with worker(app, concurrency=8):
        assert run.result(timeout=30) == [0, 1, 2]


def test_async_step_is_retried_with_backoff(app: durable.App, worker: Any) -> None:
    starts: list[datetime] = []
    ends: list[datetime] = []

    @app.step(retry=durable.RetryPolicy(max_attempts=3, initial_interval=0.1, backoff=2.0))
    async def flaky() -> str:
        starts.append(datetime.now(UTC))
        await asyncio.sleep(0)
        if len(starts) < 3:
            ends.append(datetime.now(UTC))
            raise ConnectionError(f"not yet ({len(starts)})")
        return "ok"

    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        return (yield flaky())

    run = app.start(wf)
    with worker(app):
        assert run.result(timeout=30) == "ok"
    failed = [e for e in app.history(run.run_id) if e.type == "step_attempt_failed"]
    assert [e.data["attempt"] for e in failed] == [1, 2]
    assert [e.data["error_type"] for e in failed] == ["ConnectionError"] * 2
    assert len(starts) == 3
    for i, (delay, event) in enumerate(zip([0.1, 0.2], failed, strict=True)):
        retry_at = datetime.fromisoformat(event.data["retry_at"])
        assert (retry_at - ends[i]).total_seconds() >= delay  # the policy's backoff...
        assert starts[i + 1] >= retry_at  # ...and the next attempt waited for it


def test_async_step_timeout_cancels_the_coroutine_and_is_retried(
    app: durable.App, worker: Any
) -> None:
    observed: list[str] = []

    @app.step(timeout=0.2, retry=durable.RetryPolicy(max_attempts=2, initial_interval=0.05))
    async def slow() -> str:
        if observed:  # the second attempt is quick
            return "second"
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            observed.append("cancelled")
            raise
        observed.append("not cancelled")
        return "first"

    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        return (yield slow())

    run = app.start(wf)
    with worker(app):
        assert run.result(timeout=30) == "second"
    assert observed == ["cancelled"]
    failed = [e for e in app.history(run.run_id) if e.type == "step_attempt_failed"]
    assert len(failed) == 1
    assert failed[0].data["attempt"] == 1
    assert failed[0].data["error_type"] == "TimeoutError"


def test_async_step_timeout_with_no_retry_fails_the_step(app: durable.App, worker: Any) -> None:
    @app.step(timeout=0.1, retry=None)
    async def stuck() -> None:
        await asyncio.Event().wait()

    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        try:
            yield stuck()
        except durable.StepFailed as exc:
            return f"{exc.error_type}/{exc.attempts}"
        return "no"

    run = app.start(wf)
    with worker(app):
        assert run.result(timeout=30) == "TimeoutError/1"


def test_async_attempt_that_ignores_its_cancellation_is_not_overlapped(
    app: durable.App, worker: Any
) -> None:
    spans: list[tuple[float, float]] = []

    @app.step(timeout=0.1, retry=durable.RetryPolicy(max_attempts=2, initial_interval=0.01))
    async def stubborn() -> str:
        start = time.monotonic()
        if not spans:
            spans.append((start, float("inf")))
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                await asyncio.sleep(1.5)  # goes on past the cancel grace, swallowing it
            spans[0] = (start, time.monotonic())
            return "first"
        spans.append((start, time.monotonic()))
        return "second"

    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        return (yield stubborn())

    run = app.start(wf)
    with worker(app):
        assert run.result(timeout=30) == "second"
    assert len(spans) == 2
    assert spans[0][1] <= spans[1][0]  # the retry started after the first attempt ended
    failed = [e for e in app.history(run.run_id) if e.type == "step_attempt_failed"]
    assert [e.data["error_type"] for e in failed] == ["TimeoutError"]


def test_cancelled_error_raised_by_the_step_is_a_failed_attempt(
    app: durable.App, worker: Any
) -> None:
    @app.step(retry=None)
    async def gives_up() -> None:
        raise asyncio.CancelledError("inner task cancelled")

    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        try:
            yield gives_up()
        except durable.StepFailed as exc:
            return exc.error_type
        return "no"

    run = app.start(wf)
    with worker(app):
        assert run.result(timeout=30) == "asyncio.exceptions.CancelledError"


def test_event_loop_is_not_blocked_while_steps_are_awaited(app: durable.App, worker: Any) -> None:
    @app.step()
    async def ticker(seconds: float) -> float:
        """The largest gap between two ticks of 10 ms on the worker's loop."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        end = last + seconds
        worst = 0.0
        while loop.time() < end:
            await asyncio.sleep(0.01)
            now = loop.time()
            worst = max(worst, now - last)
            last = now
        return worst

    @app.step()
    async def waits() -> str:
        await asyncio.sleep(1.0)
        return "awaited"

    @app.step()
    def sync_sleeps() -> str:
        time.sleep(1.0)  # in a pool thread, never on the loop
        return "slept"

    @app.workflow()
    def wf(ctx: durable.Context) -> list[Any]:
        return (yield ctx.all(ticker(1.5), waits(), sync_sleeps()))

    run = app.start(wf)
    with worker(app, concurrency=8):
        worst, awaited, slept = run.result(timeout=30)
    assert (awaited, slept) == ("awaited", "slept")
    assert worst < 0.5


def test_async_step_outside_a_workflow_is_a_coroutine_function(app: durable.App) -> None:
    @app.step()
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert inspect.iscoroutinefunction(double)
    assert asyncio.iscoroutinefunction(double)
    assert double.__name__ == "double"
    assert list(inspect.signature(double).parameters) == ["x"]
    coro = double(21)
    assert inspect.iscoroutine(coro)
    assert asyncio.run(coro) == 42


def test_async_generator_is_refused_as_a_step(app: durable.App) -> None:
    with pytest.raises(TypeError, match="async generator"):

        @app.step()
        async def numbers() -> Any:
            yield 1


def test_sync_step_attempts_never_overlap(app: durable.App, worker: Any) -> None:
    lock = threading.Lock()
    intervals: list[tuple[int, float, float]] = []

    @app.step(timeout=0.2, retry=durable.RetryPolicy(max_attempts=3, initial_interval=0.01))
    def slow() -> int:
        with lock:
            n = len(intervals) + 1
            intervals.append((n, time.monotonic(), float("inf")))
        if n < 3:
            time.sleep(0.8)  # runs on well past its timeout: the attempt fails meanwhile
        with lock:
            intervals[n - 1] = (n, intervals[n - 1][1], time.monotonic())
        return n

    @app.workflow()
    def wf(ctx: durable.Context) -> int:
        return (yield slow())

    run = app.start(wf)
    with worker(app):
        assert run.result(timeout=30) == 3
    failed = [e for e in app.history(run.run_id) if e.type == "step_attempt_failed"]
    assert [e.data["error_type"] for e in failed] == ["TimeoutError", "TimeoutError"]
    with lock:
        spans = sorted(intervals, key=lambda s: s[1])
    assert [s[0] for s in spans] == [1, 2, 3]
    for (_, _, end), (_, next_start, _) in itertools.pairwise(spans):
        assert end <= next_start  # attempt n ended before attempt n + 1 started


def test_a_timed_out_sync_attempt_keeps_its_slot_until_it_ends(
    app: durable.App, worker: Any
) -> None:
    release = threading.Event()
    other_started = threading.Event()

    @app.step(timeout=0.1, retry=None)
    def hangs() -> None:
        release.wait(30)

    @app.step()
    def other() -> str:
        other_started.set()
        return "ran"

    @app.workflow()
    def stuck(ctx: durable.Context) -> str:
        try:
            yield hangs()
        except durable.StepFailed as exc:
            return exc.error_type
        return "no"

    @app.workflow()
    def after(ctx: durable.Context) -> str:
        return (yield other())

    first = app.start(stuck)
    try:
        with worker(app, concurrency=1):
            assert first.result(timeout=30) == "TimeoutError"  # recorded at the timeout
            second = app.start(after)
            # The one slot is still held by the hung thread: the other step waits.
            assert not other_started.wait(0.5)
            release.set()
            assert second.result(timeout=30) == "ran"
    finally:
        release.set()
