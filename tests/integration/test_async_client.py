"""``app.aio``: the async client runs the same operations as the sync one.

Every scenario here is written once, against awaitable calls, and run through both
clients: the async client itself, and the sync client behind a thin adapter that awaits
nothing. A difference in results, errors or messages between the two fails a test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

import durable

Scenario = Callable[[Any, durable.App], Awaitable[None]]


class _SyncHandle:
    def __init__(self, handle: durable.RunHandle) -> None:
        self._h = handle
        self.run_id = handle.run_id
        self.created = handle.created

    async def result(self, timeout: float | None = None) -> Any:
        return self._h.result(timeout=timeout)

    async def status(self) -> str:
        return self._h.status()

    async def info(self) -> durable.RunInfo:
        return self._h.info()


class _SyncClient:
    """The sync client with the async client's shape (awaitables that block)."""

    def __init__(self, app: durable.App) -> None:
        self._app = app

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._app.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            value = method(*args, **kwargs)
            return _SyncHandle(value) if isinstance(value, durable.RunHandle) else value

        return call

    def handle(self, run_id: str) -> _SyncHandle:
        return _SyncHandle(self._app.handle(run_id))


def _define(app: durable.App) -> dict[str, Any]:
    attempts: dict[str, int] = {}

    @app.step(retry=None)
    def add(a: int, b: int) -> int:
        return a + b

    @app.step(retry=None)
    def flaky(key: str) -> str:
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    @app.workflow()
    def adder(ctx: durable.Context, a: int, b: int) -> int:
        return (yield add(a, b))

    @app.workflow()
    def waiter(ctx: durable.Context) -> dict[str, Any]:
        got = yield ctx.wait_signal("go")
        event = yield ctx.wait_event("bell")
        return {"signal": got, "event": event}

    @app.workflow()
    def retried(ctx: durable.Context, key: str) -> str:
        return (yield flaky(key))

    @app.workflow()
    def sleeper(ctx: durable.Context) -> str:
        yield ctx.sleep(timedelta(hours=1))
        return "woke"

    return {"adder": adder, "waiter": waiter, "retried": retried, "sleeper": sleeper}


async def _start_and_result(c: Any, app: durable.App) -> None:
    wf = _define(app)
    h = await c.start(wf["adder"], 2, 3, idempotency_key="k1")
    assert h.created is True
    again = await c.start(wf["adder"], 2, 3, idempotency_key="k1")
    assert again.created is False and again.run_id == h.run_id
    with app.worker(concurrency=2, poll_interval=0.2):
        assert await h.result(timeout=30) == 5
    assert await h.status() == "completed"
    info = await h.info()
    assert info.args == [2, 3] and info.result == 5
    history = await c.history(h.run_id)
    assert next(e.type for e in history) == "run_started"
    page = await c.list_runs(workflow=info.workflow, status="completed")
    assert page.total == 1 and page.runs[0].run_id == h.run_id
    stats = await c.stats()
    assert stats["by_status"] == {"completed": 1}
    assert await c.resolve_run_id(h.run_id[:8]) == h.run_id
    rerun = await c.rerun(h.run_id)
    fork = await c.fork(h.run_id, 1)
    assert rerun.created and fork.created
    assert (await rerun.info()).source_run_id == h.run_id
    with app.worker(concurrency=2, poll_interval=0.2):
        assert await rerun.result(timeout=30) == 5
        assert await fork.result(timeout=30) == 5


async def _signals_and_events(c: Any, app: durable.App) -> None:
    wf = _define(app)
    h = await c.start(wf["waiter"])
    await c.signal(h.run_id, "go", {"n": 1}, idempotency_key="s1")
    await c.signal(h.run_id, "go", {"n": 1}, idempotency_key="s1")  # stored once
    assert await c.emit_event("bell", "ding") is True
    assert await c.emit_event("bell", "dong") is False
    with app.worker(concurrency=2, poll_interval=0.2):
        assert await h.result(timeout=30) == {"signal": {"n": 1}, "event": "ding"}
    with pytest.raises(durable.RunNotActive, match="is not active"):
        await c.signal(h.run_id, "go")
    with pytest.raises(durable.RunNotFound, match="no run with id 'nope'"):
        await c.signal("nope", "go")


async def _controls(c: Any, app: durable.App) -> None:
    wf = _define(app)
    h = await c.start(wf["sleeper"])
    await c.pause(h.run_id)
    assert await h.status() == "paused"
    await c.resume(h.run_id)
    assert await h.status() == "pending"
    await c.cancel(h.run_id, "no longer needed")
    with pytest.raises(durable.RunCancelled):
        await h.result(timeout=30)
    with pytest.raises(durable.RunNotActive):
        await c.cancel(h.run_id)


async def _retry_and_errors(c: Any, app: durable.App) -> None:
    wf = _define(app)
    h = await c.start(wf["retried"], "r1")
    with app.worker(concurrency=2, poll_interval=0.2):
        with pytest.raises(durable.RunFailed, match="first attempt fails"):
            await h.result(timeout=30)
        with pytest.raises(durable.RunStateError, match="only failed or blocked"):
            await c.retry((await c.start(wf["sleeper"])).run_id)
        retried = await c.retry(h.run_id)
        assert await retried.result(timeout=30) == "ok"
    with pytest.raises(TypeError):
        await c.start(wf["adder"], 1)  # a missing argument: nothing is written
    with pytest.raises(durable.InvalidArgument, match="unknown status"):
        await c.list_runs(status="done")
    with pytest.raises(TimeoutError, match="did not finish within"):
        await (await c.start(wf["sleeper"])).result(timeout=0.3)
    assert (await c.stats())["total"] == 3


SCENARIOS: list[Scenario] = [_start_and_result, _signals_and_events, _controls, _retry_and_errors]


@pytest.mark.parametrize("client", ["async", "sync"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__.strip("_"))
def test_both_clients_behave_the_same(app: durable.App, client: str, scenario: Scenario) -> None:
    async def main() -> None:
        c = app.aio if client == "async" else _SyncClient(app)
        await scenario(c, app)
        await app.aio.aclose()

    asyncio.run(main())


def test_awaiting_a_result_does_not_block_the_event_loop(app: durable.App) -> None:
    @app.step()
    def slow() -> str:
        time.sleep(1.5)
        return "done"

    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        return (yield slow())

    lags: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    async def main() -> Any:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        h = await app.aio.start(wf)
        with app.worker(concurrency=2, poll_interval=0.2):
            result = await h.result(timeout=30)
        stop.set()
        await tick
        await app.aio.aclose()
        return result

    assert asyncio.run(main()) == "done"
    # The loop kept ticking while the result was awaited: had anything blocked it for
    # the step's 1.5 s, one tick would show it. The bound is generous (shared machines).
    assert len(lags) > 20
    assert max(lags) < 0.75, f"the event loop stalled for {max(lags):.2f}s"


def test_async_client_works_across_event_loops(app: durable.App) -> None:
    @app.workflow()
    def wf(ctx: durable.Context, x: int) -> int:
        return x
        yield  # a generator

    async def once(x: int) -> Any:
        h = await app.aio.start(wf, x)
        return await h.result(timeout=30)

    with app.worker(concurrency=2, poll_interval=0.2):
        assert asyncio.run(once(1)) == 1
        assert asyncio.run(once(2)) == 2  # a second loop gets its own pool and listener
