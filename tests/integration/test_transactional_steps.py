"""``@app.transaction()``: a step whose writes commit with its recorded result."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

import durable


@pytest.fixture
def ledger(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.ledger (id bigserial PRIMARY KEY, note text NOT NULL)")
    return dsn


def _notes(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT note FROM public.ledger ORDER BY id")]


def test_a_transactional_step_writes_and_records_together(
    app: durable.App, ledger: str, worker: Any
) -> None:
    seen: dict[str, Any] = {}

    @app.transaction()
    def book(conn: psycopg.Connection[Any], note: str) -> int:
        seen["search_path"] = conn.execute("SHOW search_path").fetchone()
        seen["in_transaction"] = conn.info.transaction_status.name
        row = conn.execute(
            "INSERT INTO ledger (note) VALUES (%s) RETURNING id",
            (note,),  # unqualified
        ).fetchone()
        assert row is not None
        return int(row[0])

    @app.workflow()
    def wf(ctx: durable.Context, note: str) -> list[int]:
        first = yield book(note)
        second = yield book(note + "!")
        return [first, second]

    run = app.start(wf, "hello")
    with worker(app):
        ids = run.result(timeout=30)
    assert _notes(ledger) == ["hello", "hello!"]
    assert len(ids) == 2
    # the step saw the role's own settings, inside a transaction
    assert seen["search_path"] == ('"$user", public',)
    assert seen["in_transaction"] == "INTRANS"
    # outside a workflow it is an ordinary function of a connection
    with psycopg.connect(ledger) as conn:
        book(conn, "direct")
        conn.rollback()
    assert _notes(ledger) == ["hello", "hello!"]


def test_a_failed_attempt_rolls_its_writes_back(app: durable.App, ledger: str, worker: Any) -> None:
    attempts: list[int] = []

    @app.transaction(retry=durable.RetryPolicy(max_attempts=3, initial_interval=0.05))
    def book(conn: psycopg.Connection[Any], note: str) -> str:
        attempts.append(1)
        conn.execute("INSERT INTO ledger (note) VALUES (%s)", (f"{note} try {len(attempts)}",))
        if len(attempts) < 3:
            raise RuntimeError(f"attempt {len(attempts)} fails after its insert")
        return "booked"

    @app.transaction(retry=None)
    def never(conn: psycopg.Connection[Any]) -> None:
        conn.execute("INSERT INTO ledger (note) VALUES ('never')")
        raise ValueError("always fails")

    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        got = yield book("x")
        try:
            yield never()
        except durable.StepFailed as exc:
            return f"{got}; {exc.error_type}"
        return got

    run = app.start(wf)
    with worker(app):
        assert run.result(timeout=30) == "booked; ValueError"
    assert _notes(ledger) == ["x try 3"]  # the failed attempts' inserts rolled back
    failures = [e for e in app.history(run.run_id) if e.type == "step_attempt_failed"]
    assert len(failures) == 2


def test_an_async_transactional_step_gets_an_async_connection(
    app: durable.App, ledger: str, worker: Any
) -> None:
    @app.transaction()
    async def book(conn: psycopg.AsyncConnection[Any], note: str) -> str:
        assert isinstance(conn, psycopg.AsyncConnection)
        await asyncio.sleep(0.01)
        await conn.execute("INSERT INTO ledger (note) VALUES (%s)", (note,))
        return note.upper()

    @app.transaction(retry=None)
    async def fails(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("INSERT INTO ledger (note) VALUES ('rolled back')")
        raise RuntimeError("no")

    @app.workflow()
    def wf(ctx: durable.Context) -> list[str]:
        results = yield ctx.all(book("a"), book("b"), book("c"))
        try:
            yield fails()
        except durable.StepFailed:
            results.append("failed")
        return results

    run = app.start(wf)
    with worker(app, concurrency=8):
        assert run.result(timeout=30) == ["A", "B", "C", "failed"]
    assert sorted(_notes(ledger)) == ["a", "b", "c"]


def test_a_step_that_commits_by_itself_is_refused(
    app: durable.App, ledger: str, worker: Any
) -> None:
    @app.transaction(retry=None)
    def sneaky(conn: psycopg.Connection[Any]) -> None:
        conn.execute("INSERT INTO ledger (note) VALUES ('sneaky')")
        conn.commit()

    @app.workflow()
    def wf(ctx: durable.Context) -> None:
        yield sneaky()

    run = app.start(wf)
    with worker(app), pytest.raises(durable.RunFailed, match="commit"):
        run.result(timeout=30)
    assert _notes(ledger) == []


def test_transaction_needs_a_connection_parameter(app: durable.App) -> None:
    with pytest.raises(TypeError, match="first parameter is the connection"):

        @app.transaction()
        def nothing() -> None: ...

    with pytest.raises(TypeError, match="parentheses"):
        app.transaction(lambda conn: None)  # type: ignore[arg-type]


def test_a_step_that_swallows_a_database_error_fails_instead_of_looping(
    app: durable.App, ledger: str, worker: Any
) -> None:
    calls: list[int] = []

    @app.transaction(retry=durable.RetryPolicy(max_attempts=2, initial_interval=0.05))
    def careless(conn: psycopg.Connection[Any]) -> str:
        calls.append(1)
        conn.execute("INSERT INTO ledger (note) VALUES ('kept?')")
        try:
            conn.execute("SELECT 1/0")
        except psycopg.errors.DivisionByZero:
            return "handled"  # but the transaction is aborted
        return "unreachable"

    @app.workflow()
    def wf(ctx: durable.Context) -> None:
        yield careless()

    run = app.start(wf)
    with worker(app), pytest.raises(durable.RunFailed, match="transaction is aborted"):
        run.result(timeout=30)
    assert len(calls) == 2  # its retry policy, not a loop
    assert _notes(ledger) == []


def test_a_transactional_step_can_start_a_run_in_its_transaction(
    app: durable.App, worker: Any
) -> None:
    @app.workflow(name="followup")
    def followup(ctx: durable.Context, n: int) -> int:
        return n
        yield  # a generator

    @app.transaction()
    def place(conn: psycopg.Connection[Any], n: int) -> str:
        return app.start(followup, n, run_id=f"followup-{n}", conn=conn).run_id

    @app.workflow()
    def wf(ctx: durable.Context) -> str:
        return (yield place(7))

    run = app.start(wf)
    with worker(app):
        assert run.result(timeout=30) == "followup-7"
        assert app.handle("followup-7").result(timeout=30) == 7
