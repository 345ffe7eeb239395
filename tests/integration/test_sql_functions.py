"""The SQL functions ``start_run``, ``send_signal`` and ``emit_event``: the Python calls'
semantics and one-line messages, from a trigger, psql or any language."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import durable


def _define(app: durable.App) -> tuple[Any, Any]:
    @app.workflow(name="order")
    def order(ctx: durable.Context, order_id: str, cents: int) -> dict[str, Any]:
        paid = yield ctx.wait_signal("paid")
        bell = yield ctx.wait_event(f"shipped:{order_id}")
        return {"order": order_id, "cents": cents, "paid": paid, "bell": bell}

    @app.workflow(name="other")
    def other(ctx: durable.Context) -> None:
        return None
        yield  # a generator

    return order, other


def _sql_error(conn: psycopg.Connection[Any], query: str, params: Any = ()) -> str:
    with pytest.raises(psycopg.Error) as caught, conn.transaction():
        conn.execute(query, params)
    assert caught.value.diag.message_primary is not None
    return caught.value.diag.message_primary


def test_an_after_insert_trigger_starts_a_run(app: durable.App, dsn: str, worker: Any) -> None:
    _define(app)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            CREATE TABLE public.orders (id text PRIMARY KEY, cents int NOT NULL);
            CREATE FUNCTION public.order_placed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM durable.start_run('order', jsonb_build_array(NEW.id, NEW.cents),
                                          run_id => 'order-' || NEW.id);
                RETURN NEW;
            END $$;
            CREATE TRIGGER order_placed AFTER INSERT ON public.orders
                FOR EACH ROW EXECUTE FUNCTION public.order_placed();
            """
        )
        with conn.transaction():
            conn.execute("INSERT INTO orders VALUES ('a', 100), ('b', 200)")
        with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
            conn.execute("INSERT INTO orders VALUES ('c', 300)")
            conn.execute("ALTER TABLE orders ADD CHECK (cents < 300)")  # rolls the insert back
        conn.execute("SELECT durable.send_signal('order-a', 'paid', '{\"by\": \"sql\"}')")
        assert conn.execute("SELECT durable.emit_event('shipped:a', '\"today\"')").fetchone() == (
            True,
        )
        assert conn.execute("SELECT durable.emit_event('shipped:a', '1')").fetchone() == (False,)
    with worker(app):
        result = app.handle("order-a").result(timeout=30)
    assert result == {"order": "a", "cents": 100, "paid": {"by": "sql"}, "bell": "today"}
    assert app.get_run("order-b").status in ("pending", "waiting")
    with pytest.raises(durable.RunNotFound):
        app.get_run("order-c")  # its insert rolled back, and the run with it


def test_the_sql_functions_speak_like_the_python_calls(app: durable.App, dsn: str) -> None:
    order, _ = _define(app)
    python = app.start(order, "p", 1, run_id="py-run")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET search_path TO public")  # the functions do not need ours
        start = "SELECT durable.start_run(%s, %s::jsonb, run_id => %s, idempotency_key => %s)"
        first = conn.execute(start, ("order", '["x", 5]', None, "k-1")).fetchone()
        again = conn.execute(start, ("order", '["x", 5]', None, "k-1")).fetchone()
        assert first is not None and again == first  # the idempotency key, per workflow
        info = app.get_run(first[0])
        assert (info.workflow, info.args, info.idempotency_key) == ("order", ["x", 5], "k-1")
        # the same run id as a run of another workflow: Python's message, word for word
        with pytest.raises(durable.RunStateError) as py_error:
            app.start("other", run_id="py-run")
        assert _sql_error(conn, start, ("other", "[]", "py-run", None)) == str(py_error.value)
        assert "args must be a JSON array" in _sql_error(
            conn, start, ("order", '{"a": 1}', None, None)
        )
        # signals: unknown and ended runs, as app.signal says them
        with pytest.raises(durable.RunNotFound) as not_found:
            app.signal("nope", "paid")
        assert _sql_error(conn, "SELECT durable.send_signal('nope', 'paid')") == str(
            not_found.value
        )
        app.cancel(python.run_id)
        with pytest.raises(durable.RunNotActive) as inactive:
            app.signal(python.run_id, "paid")
        assert _sql_error(conn, "SELECT durable.send_signal('py-run', 'paid')") == str(
            inactive.value
        )
        # events latch across the SQL and the Python side
        assert conn.execute("SELECT durable.emit_event('k', NULL)").fetchone() == (True,)
        assert app.emit_event("k", 2) is False
    assert app.stats()["total"] == 2
