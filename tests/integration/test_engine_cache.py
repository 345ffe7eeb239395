"""The worker's sticky cache lets engines go outside every lock: an evicted run's
``finally`` (user code, maybe slow) runs on the closer thread, not from ``__del__`` and
not under the worker's locks, so claims and other runs go on meanwhile."""

from __future__ import annotations

import threading
import traceback
from typing import Any

import durable

from .waiting import wait_for, wait_status


def test_an_evicted_engine_closes_on_the_closer_thread_while_other_runs_go_on(
    app: durable.App, worker: Any
) -> None:
    release = threading.Event()
    closed: list[tuple[str, list[str]]] = []

    @app.step()
    def quick(x: int) -> int:
        return x

    @app.workflow()
    def parked(ctx: durable.Context) -> Any:
        try:
            yield ctx.wait_signal("go")
        finally:
            if ctx.is_replaying:  # the engine is being let go, not the run ending
                frames = [f.name for f in traceback.extract_stack()]
                closed.append((threading.current_thread().name, frames))
                release.wait(30)  # a slow finally: holds the closer thread, nothing else

    @app.workflow()
    def fast(ctx: durable.Context) -> Any:
        return (yield quick(7))

    with worker(app, cache_size=1):
        first = app.start(parked).run_id
        wait_status(app, first, "waiting")
        second = app.start(parked).run_id  # cached in turn: the first is evicted
        wait_status(app, second, "waiting")
        wait_for(lambda: closed, what="the evicted engine's finally")
        # The closer thread is now stuck in the first run's finally; the worker is not.
        assert app.start(fast).result(timeout=20) == 7
        release.set()
    thread, frames = closed[0]
    assert thread == "durable-closer"
    assert "__del__" not in frames
