"""``conn=``: runs, signals and events written in the caller's own transaction."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

import durable


def _define(app: durable.App) -> Any:
    @app.workflow()
    def order(ctx: durable.Context, order_id: str) -> str:
        got = yield ctx.wait_signal("paid")
        return f"{order_id} paid {got}"

    return order


def _orders_table(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.orders (id text PRIMARY KEY)")


def test_start_commits_with_the_callers_transaction(
    app: durable.App, dsn: str, worker: Any
) -> None:
    order = _define(app)
    _orders_table(dsn)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO orders VALUES ('o-1')")
        run = app.start(order, "o-1", run_id="run-o-1", conn=conn)
        assert run.created
        # Not visible outside the transaction before the commit...
        with pytest.raises(durable.RunNotFound):
            app.get_run("run-o-1")
        app.signal("run-o-1", "paid", 10, conn=conn)
        # ...and the caller's search_path is its own again (unqualified names still work).
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (1,)
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        conn.commit()
    with worker(app):
        assert run.result(timeout=30) == "o-1 paid 10"


def test_a_rolled_back_start_leaves_no_trace_and_never_runs(
    app: durable.App, dsn: str, worker: Any
) -> None:
    order = _define(app)
    ran: list[str] = []

    @app.workflow()
    def tracked(ctx: durable.Context) -> None:
        ran.append(ctx.run_id)
        return None
        yield  # a generator

    with psycopg.connect(dsn) as conn:
        app.start(tracked, run_id="ghost", conn=conn)
        app.start(order, "o-2", run_id="ghost-2", conn=conn)
        assert app.emit_event("bell-x", 1, conn=conn) is True
        conn.rollback()
    marker = app.start(tracked, run_id="after")
    with worker(app):
        marker.result(timeout=30)
    assert ran == ["after"]  # the worker ran the later run, never the rolled-back ones
    with pytest.raises(durable.RunNotFound):
        app.get_run("ghost")
    assert app.emit_event("bell-x", 2) is True  # the rolled-back emission never latched
    assert app.stats()["total"] == 1


def test_bad_connections_get_one_line_errors_and_write_nothing(
    app: durable.App, dsn: str, empty_dsn: str
) -> None:
    order = _define(app)
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        pytest.raises(durable.InvalidConnection, match="autocommit mode"),
    ):
        app.start(order, "o", conn=conn)
    with (
        psycopg.connect(empty_dsn) as conn,
        pytest.raises(durable.InvalidConnection, match="another database"),
    ):
        app.start(order, "o", conn=conn)
    other = durable.App(empty_dsn)
    other.stats()  # migrates the other database: pgdurable is there, but not this App's
    other.close()
    with (
        psycopg.connect(empty_dsn) as conn,
        pytest.raises(durable.InvalidConnection, match="another database"),
    ):
        app.start(order, "o", conn=conn)
    with psycopg.connect(dsn) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0")
        with pytest.raises(durable.InvalidConnection, match="failed transaction"):
            app.start(order, "o", conn=conn)
    with pytest.raises(TypeError, match=r"psycopg\.Connection"):
        app.start(order, "o", conn="postgresql://")
    assert app.stats()["total"] == 0


def test_a_refused_call_keeps_the_callers_transaction_usable(app: durable.App, dsn: str) -> None:
    order = _define(app)
    _orders_table(dsn)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO orders VALUES ('kept')")
        with pytest.raises(durable.RunNotFound):
            app.signal("missing", "paid", conn=conn)
        with pytest.raises(TypeError):
            app.start(order, conn=conn)  # a missing argument
        app.start(order, "o-3", run_id="o-3", conn=conn)
        conn.commit()
    assert app.get_run("o-3").status == "pending"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT id FROM orders").fetchall() == [("kept",)]


def test_async_start_in_the_callers_transaction(app: durable.App, dsn: str, worker: Any) -> None:
    order = _define(app)
    _orders_table(dsn)

    async def main() -> Any:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            await conn.execute("INSERT INTO orders VALUES ('a-1')")
            h = await app.aio.start(order, "a-1", run_id="a-1", conn=conn)
            await app.aio.signal("a-1", "paid", 5, conn=conn)
            await conn.commit()
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            await app.aio.start(order, "a-2", run_id="a-2", conn=conn)
            await conn.rollback()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            with pytest.raises(durable.InvalidConnection, match="autocommit"):
                await app.aio.start(order, "a-3", conn=conn)
        with (
            psycopg.connect(dsn) as sync_conn,
            pytest.raises(TypeError, match="AsyncConnection"),
        ):
            await app.aio.start(order, "a-4", conn=sync_conn)
        with worker(app):
            result = await h.result(timeout=30)
        await app.aio.aclose()
        return result

    assert asyncio.run(main()) == "a-1 paid 5"
    with pytest.raises(durable.RunNotFound):
        app.get_run("a-2")
    assert app.stats()["total"] == 1


def test_an_autocommit_connection_inside_its_transaction_block_is_joined(
    app: durable.App, dsn: str
) -> None:
    order = _define(app)
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            app.start(order, "o-7", run_id="ac-1", conn=conn)
        with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
            app.start(order, "o-8", run_id="ac-2", conn=conn)
            conn.execute("SELECT 1/0")  # the block rolls back, the run with it
    assert app.get_run("ac-1").status == "pending"
    with pytest.raises(durable.RunNotFound):
        app.get_run("ac-2")
