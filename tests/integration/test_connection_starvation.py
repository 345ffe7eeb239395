"""A worker that cannot get the connections it wants (a role with a connection limit, as
on a server near max_connections) slows down instead of re-running steps: a step's result
that cannot be written yet is kept and written when a connection comes free."""

from __future__ import annotations

import collections
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import durable

LIMIT = 4


@pytest.fixture
def limited_dsn(dsn: str) -> Iterator[str]:
    """The test database as a role that may hold at most LIMIT connections."""
    role = f"limited_{secrets.token_hex(4)}"
    ident = sql.Identifier(role)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT {}").format(ident, sql.Literal(LIMIT))
        )
        conn.execute(sql.SQL("GRANT ALL ON SCHEMA durable TO {}").format(ident))
        conn.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA durable TO {}").format(ident))
        conn.execute(sql.SQL("GRANT ALL ON ALL SEQUENCES IN SCHEMA durable TO {}").format(ident))
    try:
        yield make_conninfo(dsn, user=role)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            conn.execute(sql.SQL("DROP ROLE {}").format(ident))


def test_steps_run_once_when_the_worker_is_short_of_connections(limited_dsn: str) -> None:
    app = durable.App(limited_dsn, pool_size=20)
    calls: collections.Counter[tuple[int, int]] = collections.Counter()
    lock = threading.Lock()

    @app.step()
    def work(run: int, i: int) -> int:
        with lock:
            calls[(run, i)] += 1
        return i

    @app.workflow()
    def three(ctx: durable.Context, run: int) -> Any:
        total = 0
        for i in range(3):
            total += yield work(run, i)
        return total

    runs = [app.start(three, n) for n in range(40)]
    with app.worker(concurrency=16, lease_seconds=10.0, poll_interval=0.2):
        for run in runs:
            assert run.result(timeout=120) == 3
    app.close()
    assert set(calls) == {(n, i) for n in range(40) for i in range(3)}
    again = {key: n for key, n in calls.items() if n > 1}
    assert not again, f"steps ran more than once: {again}"
