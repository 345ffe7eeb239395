"""The workflow timeout is stored with the run: rerun, fork and children keep it whichever
process creates them, with or without the workflow registered there."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import durable

from .waiting import wait_status


def stored_timeout(dsn: str, run_id: str) -> tuple[float | None, bool, bool]:
    """(timeout_seconds, timeout_unknown, has a deadline) as stored with the run."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT timeout_seconds, timeout_unknown, deadline IS NOT NULL "
            "FROM durable.runs WHERE run_id = %s",
            (run_id,),
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def make_app(dsn: str) -> durable.App:
    app = durable.App(dsn)

    @app.workflow(name="slow", timeout=0.5)
    def slow(ctx: durable.Context) -> Any:
        yield ctx.wait_signal("never")

    return app


def test_rerun_and_fork_from_an_app_without_the_workflow_keep_its_timeout(
    dsn: str, worker: Any
) -> None:
    registered = make_app(dsn)
    first = registered.start("slow")
    with worker(registered):
        with pytest.raises(durable.RunTimedOut):
            first.result(timeout=30)
        bare = durable.App(dsn)  # registers nothing, like `durable rerun` without --app
        try:
            again = bare.rerun(first.run_id)
            forked = bare.fork(first.run_id, 1)
        finally:
            bare.close()
        assert stored_timeout(dsn, again.run_id) == (0.5, False, True)
        assert stored_timeout(dsn, forked.run_id) == (0.5, False, True)
        for handle in (again, forked):
            with pytest.raises(durable.RunTimedOut):
                registered.handle(handle.run_id).result(timeout=30)
    registered.close()


def test_a_child_created_where_its_workflow_is_unknown_gets_its_timeout_when_claimed(
    dsn: str, worker: Any
) -> None:
    parents = durable.App(dsn)  # knows only the parent

    @parents.workflow(name="parent")
    def parent(ctx: durable.Context) -> Any:
        try:
            yield ctx.child("slow")
        except durable.ChildFailed as exc:
            return exc.status
        return "no timeout"

    children = make_app(dsn)  # knows only the child, with its timeout
    run = parents.start(parent)
    child_id = f"{run.run_id}:1"
    with worker(parents):
        wait_status(parents, child_id, "pending")
        assert stored_timeout(dsn, child_id) == (None, True, False)
        with worker(children):
            assert run.result(timeout=30) == "timed_out"
    assert stored_timeout(dsn, child_id) == (0.5, False, True)
    assert parents.get_run(child_id).status == "timed_out"
    parents.close()
    children.close()
