"""The workflows the crash-recovery acceptance tests run in worker subprocesses.

Worker subprocesses import it as ``crash_app:app`` (the tests put this directory on
PYTHONPATH, and ``$DURABLE_DSN`` names the database); the test process calls
:func:`build` with its own DSN to start runs and send signals.

Recorded steps (``work``, ``compensate``) write one row into ``public.step_executions``
when they begin and set ``finished_at`` when they end, through a connection of their own
(autocommit), so the tests can count how often each step really ran and in which process.
The table lives outside pgdurable's schema; :data:`EXECUTIONS_TABLE` creates it. The
``gate`` step runs until the test opens its gate (a row in ``public.gates``, see
:data:`GATES_TABLE`), so a test can act while a step is known to be running.

Step results carry the id of the execution row that produced them, so a test can tell
which execution's result the log recorded.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Generator
from typing import Any

import side_conn

import durable

EXECUTIONS_TABLE = """
CREATE TABLE IF NOT EXISTS public.step_executions (
    id           bigserial   PRIMARY KEY,
    run_key      text        NOT NULL,
    step_key     text        NOT NULL,
    pid          integer     NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz
)
"""

GATES_TABLE = """
CREATE TABLE IF NOT EXISTS public.gates (
    run_key  text PRIMARY KEY
)
"""

MODULUS = 1_000_003
PARALLEL = 3
"""Steps in the ``ctx.all`` of :func:`pipeline`."""

PIPELINE_STEPS = ("a", "b", *(f"p{i}" for i in range(PARALLEL)), "c", "d")
"""The step keys one ``pipeline`` run records, in the order the workflow yields them."""


def mix(value: int) -> int:
    """What the ``work`` and ``compute`` steps compute (the tests recompute it)."""
    return (value * 31 + 7) % MODULUS


def expected_pipeline_value(n: int) -> int:
    """The ``value`` a ``pipeline`` (or ``steady``) run started with ``n`` returns."""
    a = mix(n)
    b = mix(a)
    parallel = sum(mix(b + i) for i in range(PARALLEL))
    return mix(mix(parallel))


def collector_step_keys(k: int) -> list[str]:
    """The recorded steps a ``collector`` run that receives ``k`` signals yields."""
    return [f"w{i}" for i in range(k) if i % 3 == 2] + ["final"]


# -- recording executions ------------------------------------------------------------------

_execute = side_conn.execute


def _begin(run_key: str, step_key: str) -> int:
    exec_id: int = _execute(
        "INSERT INTO public.step_executions (run_key, step_key, pid) "
        "VALUES (%s, %s, %s) RETURNING id",
        (run_key, step_key, os.getpid()),
    )
    return exec_id


def _end(exec_id: int) -> None:
    _execute(
        "UPDATE public.step_executions SET finished_at = clock_timestamp() "
        "WHERE id = %s RETURNING id",
        (exec_id,),
    )


# -- the app -------------------------------------------------------------------------------


def build(dsn: str | None = None) -> durable.App:
    """An App with the acceptance workflows registered (DSN: ``dsn``, else the usual)."""
    app = durable.App(dsn)

    @app.step(name="work")
    def work(run_key: str, step_key: str, value: int) -> dict[str, int]:
        """A recorded step that takes a few milliseconds."""
        exec_id = _begin(run_key, step_key)
        time.sleep(random.uniform(0.01, 0.04))
        _end(exec_id)
        return {"value": mix(value), "exec": exec_id}

    @app.step(name="compensate")
    def compensate(run_key: str, received: list[Any]) -> dict[str, int]:
        """The recorded compensation of a cancelled ``collector``."""
        exec_id = _begin(run_key, "compensate")
        time.sleep(random.uniform(0.005, 0.02))
        _end(exec_id)
        return {"undone": len(received), "exec": exec_id}

    @app.step(name="gate")
    def gate(run_key: str) -> dict[str, int]:
        """A recorded step that runs until the test inserts ``run_key`` into
        ``public.gates`` (at most a minute)."""
        exec_id = _begin(run_key, "gate")
        deadline = time.monotonic() + 60
        while not _execute("SELECT 1 FROM public.gates WHERE run_key = %s", (run_key,)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {run_key!r} never opened")
            time.sleep(0.01)
        _end(exec_id)
        return {"exec": exec_id}

    @app.step(name="compute")
    def compute(value: int) -> int:
        """An unrecorded step (it needs no database of its own)."""
        time.sleep(random.uniform(0.01, 0.03))
        return mix(value)

    @app.workflow(name="pipeline")
    def pipeline(ctx: durable.Context, run_key: str, n: int) -> Generator[Any, Any, Any]:
        """Seven recorded steps, three of them in parallel, and a short durable sleep."""
        a = yield work(run_key, "a", n)
        b = yield work(run_key, "b", a["value"])
        yield ctx.sleep(0.05)
        par = yield ctx.all(*(work(run_key, f"p{i}", b["value"] + i) for i in range(PARALLEL)))
        c = yield work(run_key, "c", sum(p["value"] for p in par))
        d = yield work(run_key, "d", c["value"])
        execs = {"a": a["exec"], "b": b["exec"], "c": c["exec"], "d": d["exec"]}
        execs.update({f"p{i}": p["exec"] for i, p in enumerate(par)})
        return {"value": d["value"], "execs": execs}

    @app.workflow(name="steady")
    def steady(ctx: durable.Context, n: int) -> Generator[Any, Any, Any]:
        """The same computation as ``pipeline`` with unrecorded steps and longer sleeps."""
        a = yield compute(n)
        yield ctx.sleep(0.2)
        b = yield compute(a)
        par = yield ctx.all(*(compute(b + i) for i in range(PARALLEL)))
        yield ctx.sleep(0.2)
        c = yield compute(sum(par))
        d = yield compute(c)
        return {"value": d}

    @app.workflow(name="collector")
    def collector(ctx: durable.Context, run_key: str, k: int) -> Generator[Any, Any, Any]:
        """Wait for ``k`` signals named ``n`` (with short sleeps and recorded steps in
        between) and return their payloads in the order received. On cancellation, a
        recorded compensation step undoes what was received, then the run ends cancelled."""
        received: list[Any] = []
        try:
            for i in range(k):
                timeout = 600.0 if i % 2 else None  # half the waits also start a timer
                received.append((yield ctx.wait_signal("n", timeout=timeout)))
                if i % 2 == 1:
                    yield ctx.sleep(0.03)
                if i % 3 == 2:
                    yield work(run_key, f"w{i}", i)
            yield work(run_key, "final", len(received))
        except durable.Cancelled:
            yield compensate(run_key, received)
            raise
        return received

    @app.workflow(name="gated")
    def gated(ctx: durable.Context, run_key: str, k: int) -> Generator[Any, Any, Any]:
        """Run the ``gate`` step, then wait for ``k`` signals named ``n``."""
        yield gate(run_key)
        received: list[Any] = []
        for _ in range(k):
            received.append((yield ctx.wait_signal("n")))
        return received

    return app


app = build()
