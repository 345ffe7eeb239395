"""The app of the queue stress test, run by worker subprocesses as ``queue_app:app``.

``throttled`` runs go through the queue ``throttled`` (global, per-key and rate limits);
``free`` runs through ``free`` (no limits). Each run's one step records when it ran, in
which process, for which key, in ``public.queue_spans`` (on a connection of its own,
committed at once), so the test can compute overlaps from what the steps saw. A span a
SIGKILL cut short has no ``finished_at``; the test ends it at the kill.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Generator
from typing import Any

import side_conn

import durable

SPANS_TABLE = """
CREATE TABLE IF NOT EXISTS public.queue_spans (
    id           bigserial   PRIMARY KEY,
    run_key      text        NOT NULL,
    queue        text        NOT NULL,
    key          text,
    pid          integer     NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz
)
"""

CONCURRENCY = 5
KEY_CONCURRENCY = 1
RATE = durable.Rate(25, per=1.0)

_execute = side_conn.execute


def build(dsn: str | None = None) -> durable.App:
    app = durable.App(dsn)
    app.queue(
        "throttled",
        concurrency=CONCURRENCY,
        key_concurrency=KEY_CONCURRENCY,
        rate_limit=RATE,
    )
    app.queue("free")

    @app.step(name="span")
    def span(run_key: str, queue: str, key: str | None, seconds: float) -> int:
        span_id: int = _execute(
            "INSERT INTO public.queue_spans (run_key, queue, key, pid) "
            "VALUES (%s, %s, %s, %s) RETURNING id",
            (run_key, queue, key, os.getpid()),
        )
        time.sleep(seconds)
        _execute(
            "UPDATE public.queue_spans SET finished_at = clock_timestamp() WHERE id = %s "
            "RETURNING id",
            (span_id,),
        )
        return span_id

    @app.workflow(name="throttled", queue="throttled")
    def throttled(
        ctx: durable.Context, run_key: str, key: str, seconds: float
    ) -> Generator[Any, Any, Any]:
        return (yield span(run_key, "throttled", key, seconds))

    @app.workflow(name="free", queue="free")
    def free(ctx: durable.Context, run_key: str) -> Generator[Any, Any, Any]:
        return (yield span(run_key, "free", None, random.uniform(0.01, 0.05)))

    return app


app = build()
