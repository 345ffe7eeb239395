"""The app of the schedule acceptance tests, run by worker subprocesses as
``schedule_app:app``: a schedule ``beat`` every second (every tick starts a run, whatever
the previous one does: ``allow_all``), whose runs record the tick and the process."""

from __future__ import annotations

import os
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import side_conn

import durable

TICKS_TABLE = """
CREATE TABLE IF NOT EXISTS public.ticks (
    run_id  text    NOT NULL,
    tick    timestamptz NOT NULL,
    pid     integer NOT NULL
)
"""


def build(dsn: str | None = None) -> durable.App:
    app = durable.App(dsn)

    @app.step(name="record")
    def record(run_id: str, tick: str) -> int:
        side_conn.execute(
            "INSERT INTO public.ticks VALUES (%s, %s, %s) RETURNING pid",
            (run_id, tick, os.getpid()),
        )
        return os.getpid()

    @app.workflow(name="beat")
    def beat(ctx: durable.Context) -> Generator[Any, Any, Any]:
        assert ctx.scheduled_at is not None
        return (yield record(ctx.run_id, ctx.scheduled_at.isoformat()))

    app.schedule("beat", beat, every=1, overlap="allow_all", catchup_window=timedelta(minutes=5))
    return app


app = build()
