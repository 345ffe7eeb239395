"""The app of the transactional-step crash test, run by worker subprocesses as
``tx_app:app``.

``reserve`` is a transactional step: it inserts the order's reservation on the step's
connection (inside the transaction that will record its result). With ``TX_HANG=1`` in
the environment it then reports that it is inside (a row in ``public.tx_inside``, on a
connection of its own, committed at once) and hangs, so the test can SIGKILL the worker
while the reservation is written but not committed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from typing import Any

import psycopg

import durable

TABLES = """
CREATE TABLE IF NOT EXISTS public.reservations (
    id        bigserial PRIMARY KEY,
    order_id  text      NOT NULL,
    pid       integer   NOT NULL
);
CREATE TABLE IF NOT EXISTS public.tx_inside (
    order_id  text    NOT NULL,
    pid       integer NOT NULL
);
"""


def build(dsn: str | None = None) -> durable.App:
    app = durable.App(dsn)

    @app.transaction(name="reserve")
    def reserve(conn: psycopg.Connection[Any], order_id: str) -> int:
        row = conn.execute(
            "INSERT INTO reservations (order_id, pid) VALUES (%s, %s) RETURNING id",
            (order_id, os.getpid()),
        ).fetchone()
        assert row is not None
        if os.environ.get("TX_HANG") == "1":
            with psycopg.connect(os.environ["DURABLE_DSN"], autocommit=True) as side:
                side.execute(
                    "INSERT INTO public.tx_inside VALUES (%s, %s)", (order_id, os.getpid())
                )
            time.sleep(120)  # until the test kills this worker
        return int(row[0])

    @app.workflow(name="order")
    def order(ctx: durable.Context, order_id: str) -> Generator[Any, Any, Any]:
        reservation = yield reserve(order_id)
        return {"order": order_id, "reservation": reservation}

    return app


app = build()
