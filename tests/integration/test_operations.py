"""Inspecting and operating runs through ``durable.App`` with a real worker: list_runs and
stats, retry, rerun, fork, prune, the blocked/retry cycle after a code change, and the
errors for unknown or finished runs."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import durable

HERE = Path(__file__).resolve()


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Poll an observable condition with a deadline (never a blind sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout}s: {what}")
        time.sleep(0.02)


def wait_status(app: durable.App, run_id: str, status: str, timeout: float = 20.0) -> None:
    wait_for(lambda: app.get_run(run_id).status == status, timeout, f"{run_id} {status}")


def types(app: durable.App, run_id: str) -> list[str]:
    return [e.type for e in app.history(run_id)]


def db_now(dsn: str) -> datetime:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


def count(dsn: str, query: str, *params: Any) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def line_of(marker: str) -> int:
    """The line number of the (only) source line of this file that contains ``marker``."""
    lines = [
        i
        for i, text in enumerate(HERE.read_text().splitlines(), 1)
        if marker in text and "line_of(" not in text
    ]
    assert len(lines) == 1, lines
    return lines[0]


# -- list_runs and stats -----------------------------------------------------------------


def test_list_runs_filters_searches_pages_and_orders_newest_first(
    app: durable.App, worker: Any
) -> None:
    @app.step()
    def double(x: int) -> int:
        return 2 * x

    @app.workflow(name="alpha")
    def alpha(ctx: durable.Context, x: int) -> int:
        return (yield double(x))

    @app.workflow(name="beta")
    def beta(ctx: durable.Context, x: int) -> Any:
        return (yield ctx.wait_signal("go"))

    @app.workflow(name="gamma")
    def gamma(ctx: durable.Context, x: int) -> Any:
        raise ValueError(f"gamma {x} broke")
        yield double(x)

    plan = [
        (alpha, 1, "order-a_1"),
        (beta, 2, "order-b-2"),
        (alpha, 3, "order-a-3"),
        (gamma, 4, None),
        (beta, 5, "Invoice-5"),
        (alpha, 6, None),
    ]
    runs = [app.start(wf, x, idempotency_key=key).run_id for wf, x, key in plan]
    with worker(app):
        for (wf, _, _), rid in zip(plan, runs, strict=True):
            expected = {"alpha": "completed", "beta": "waiting", "gamma": "failed"}
            wait_status(app, rid, expected[wf.durable_name])  # type: ignore[attr-defined]
    newest_first = list(reversed(runs))

    page = app.list_runs()
    assert page.total == 6 and [r.run_id for r in page.runs] == newest_first
    by_id = {r.run_id: r for r in page.runs}
    assert by_id[runs[0]].workflow == "alpha" and by_id[runs[0]].status == "completed"
    assert by_id[runs[0]].args == [1] and by_id[runs[0]].result == 2
    assert by_id[runs[0]].idempotency_key == "order-a_1"
    assert by_id[runs[3]].error is not None
    assert by_id[runs[3]].error["error_type"] in ("ValueError", "builtins.ValueError")
    assert by_id[runs[1]].result is None and by_id[runs[1]].status == "waiting"

    def ids(**filters: Any) -> tuple[list[str], int]:
        p = app.list_runs(**filters)
        return [r.run_id for r in p.runs], p.total

    assert ids(workflow="alpha") == ([runs[5], runs[2], runs[0]], 3)
    assert ids(status="waiting") == ([runs[4], runs[1]], 2)
    assert ids(status="failed") == ([runs[3]], 1)
    assert ids(workflow="alpha", status="waiting") == ([], 0)
    assert ids(workflow="nope") == ([], 0)
    # search: idempotency key (case-insensitive), run id, workflow name; LIKE is escaped
    assert ids(search="order-") == ([runs[2], runs[1], runs[0]], 3)
    assert ids(search="INVOICE") == ([runs[4]], 1)
    assert ids(search="_") == ([runs[0]], 1)  # a literal underscore, not a wildcard
    assert ids(search="%") == ([], 0)
    assert ids(search=runs[3][4:20]) == ([runs[3]], 1)
    assert ids(search="gam") == ([runs[3]], 1)
    assert ids(search="bet", status="waiting") == ([runs[4], runs[1]], 2)
    # pagination: consistent totals, pages that add up to the whole list
    pages = [app.list_runs(limit=4, offset=o) for o in (0, 4)]
    assert [p.total for p in pages] == [6, 6]
    assert [r.run_id for p in pages for r in p.runs] == newest_first
    assert ids(limit=2, offset=2) == (newest_first[2:4], 6)
    assert ids(limit=10, offset=6) == ([], 6)
    assert ids(workflow="alpha", limit=1, offset=1) == ([runs[2]], 3)
    with pytest.raises(ValueError):
        app.list_runs(limit=-1)

    stats = app.stats()
    assert stats["total"] == 6
    assert stats["by_status"] == {"completed": 3, "waiting": 2, "failed": 1}
    assert stats["by_workflow"] == {
        "alpha": {"completed": 3},
        "beta": {"waiting": 2},
        "gamma": {"failed": 1},
    }


def test_search_finds_arguments_and_custom_status(app: durable.App, worker: Any) -> None:
    @app.workflow(name="ship")
    def ship(ctx: durable.Context, customer: str, items: list[str]) -> Any:
        ctx.set_status({"stage": "Packing", "carrier": "Bluebird"})
        yield ctx.wait_signal("go")

    alice = app.start(ship, "alice@example.com", ["teapot"]).run_id
    bob = app.start(ship, "bob@example.com", ["kettle"]).run_id
    with worker(app):
        for rid in (alice, bob):
            wait_status(app, rid, "waiting")

    def found(text: str) -> list[str]:
        page = app.list_runs(search=text)
        assert page.total == len(page.runs)
        return sorted(r.run_id for r in page.runs)

    assert found("ALICE@") == [alice]  # an argument, case-insensitively
    assert found("kettle") == [bob]  # inside a list argument
    assert found("bluebird") == sorted([alice, bob])  # the custom status
    assert found("nobody") == []


def test_search_follows_continue_as_new_and_runs_started_in_sql(
    app: durable.App, worker: Any, dsn: str
) -> None:
    """What a search matches of the arguments is the current history's: after
    continue_as_new the new arguments are found and the old ones no longer; a run started
    by the SQL function start_run is found by its arguments too."""

    @app.workflow(name="batch")
    def batch(ctx: durable.Context, label: str) -> Any:
        if label == "first-batch":
            yield ctx.continue_as_new("second-batch")
        yield ctx.wait_signal("go")

    run_id = app.start(batch, "first-batch").run_id
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT durable.start_run('batch', '[\"from-sql-batch\"]'::jsonb)"
        ).fetchone()
    assert row is not None
    from_sql = row[0]
    with worker(app):
        wait_status(app, run_id, "waiting")
        wait_status(app, from_sql, "waiting")

    def found(text: str) -> list[str]:
        return sorted(r.run_id for r in app.list_runs(search=text).runs)

    assert found("second-batch") == [run_id]
    assert found("first-batch") == []
    assert found("FROM-SQL") == [from_sql]


def test_search_can_read_the_trigram_indexes(app: durable.App, dsn: str) -> None:
    """With pg_trgm installed (it is on the servers the tests use), the list query's search
    is one the runs_search and runs_search_custom indexes answer: its expressions are the
    indexes' own. (Whether the planner prefers them depends on the table's size; at a few
    thousand rows a read of every run is cheaper, so the check turns the other plans off.
    benchmarks/bench_scale.py measures the choice at a million runs.)"""

    @app.workflow(name="order")
    def order(ctx: durable.Context, customer: str) -> Any:
        yield ctx.sleep(0)

    customers = [f"{uuid.uuid4().hex}@example.com" for _ in range(2_000)]
    app.start_many(order, [(c,) for c in customers])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE durable.runs")
        query = app.store.db.q["list_runs"]  # the very statement list_runs sends
        params = {
            "workflow": None,
            "status": None,
            "search": f"%{customers[1234][:12]}%",
            "limit": 50,
            "offset": 0,
        }
        cur = conn.cursor()
        conn.execute("SET search_path TO durable, pg_catalog")
        conn.execute("SET enable_seqscan = off")  # and the newest-first walk
        conn.execute("SET enable_indexscan = off")
        plan = "\n".join(r[0] for r in cur.execute("EXPLAIN " + query, params).fetchall())
    assert "runs_search" in plan, plan
    assert "runs_search_custom" in plan, plan
    page = app.list_runs(search=customers[1234][:12].upper())
    assert [r.args for r in page.runs] == [[customers[1234]]]


def test_stats_of_an_empty_database(app: durable.App) -> None:
    assert app.stats() == {"total": 0, "by_status": {}, "by_workflow": {}}
    page = app.list_runs()
    assert page.runs == [] and page.total == 0


# -- retry -------------------------------------------------------------------------------


def test_retry_of_a_failed_run_resumes_at_the_failed_step_with_fresh_attempts(
    app: durable.App, worker: Any
) -> None:
    state = {"failures_left": 1000}
    calls: Counter[str] = Counter()

    @app.step()
    def first(x: int) -> int:
        calls["first"] += 1
        return x + 1

    @app.step(retry=durable.RetryPolicy(max_attempts=2, initial_interval=0.01))
    def second(x: int) -> int:
        calls["second"] += 1
        if state["failures_left"] > 0:
            state["failures_left"] -= 1
            raise RuntimeError("the payment service is down")
        return x * 10

    @app.step()
    def third(x: int) -> int:
        calls["third"] += 1
        return x + 3

    @app.workflow()
    def pipeline(ctx: durable.Context, x: int) -> list[int]:
        a = yield first(x)
        b = yield second(a)
        c = yield third(b)
        return [a, b, c]

    run = app.start(pipeline, 1)
    with worker(app), pytest.raises(durable.RunFailed) as failed:
        run.result(timeout=30)
    assert failed.value.error_type == "durable.StepFailed"
    assert "the payment service is down" in failed.value.message
    info = app.get_run(run.run_id)
    assert info.status == "failed" and info.finished_at is not None
    assert info.error is not None and info.error["error_type"] == "durable.StepFailed"
    assert calls == Counter(first=1, second=2)

    # The fix: the service fails once more, then works. With the old attempt count (2 of
    # 2 used) that one failure would fail the step again; with fresh attempts it retries.
    state["failures_left"] = 1
    handle = app.retry(run.run_id)
    assert handle.run_id == run.run_id
    info = app.get_run(run.run_id)
    assert info.status == "waiting" and info.error is None and info.finished_at is None
    assert app.list_runs(status="failed").total == 0
    with worker(app):
        assert handle.result(timeout=30) == [2, 20, 23]

    assert calls == Counter(first=1, second=4, third=1)
    info = app.get_run(run.run_id)
    assert info.status == "completed" and info.error is None and info.result == [2, 20, 23]
    history = app.history(run.run_id)
    assert [e.type for e in history] == [
        "run_started",
        "step_completed",
        "step_attempt_failed",
        "step_failed",
        "run_failed",
        "run_retried",
        "step_attempt_failed",
        "step_completed",
        "step_completed",
        "run_completed",
    ]
    assert [e.seq for e in history] == list(range(1, 11))
    assert history[2].data["attempt"] == 1 and history[3].data["attempts"] == 2
    assert history[5].data["voids"] == [3, 4, 5]
    name = second.durable_name  # type: ignore[attr-defined]
    # fresh attempts: the count starts over at 1 for the failed step
    assert {k: history[6].data[k] for k in ("pos", "name", "attempt")} == {
        "pos": 2,
        "name": name,
        "attempt": 1,
    }
    assert {k: history[7].data[k] for k in ("pos", "name", "attempt")} == {
        "pos": 2,
        "name": name,
        "attempt": 2,
    }


def test_retry_after_an_exception_in_workflow_code(app: durable.App, worker: Any) -> None:
    broken = {"flag": True}
    calls: Counter[str] = Counter()

    @app.step()
    def fetch() -> int:
        calls["fetch"] += 1
        return 41

    @app.workflow()
    def fragile(ctx: durable.Context) -> int:
        n = yield fetch()
        if broken["flag"]:
            raise KeyError("missing setting")
        return n + 1

    run = app.start(fragile)
    with worker(app):
        with pytest.raises(durable.RunFailed, match="missing setting"):
            run.result(timeout=30)
        broken["flag"] = False
        assert app.retry(run.run_id).result(timeout=30) == 42
    assert calls["fetch"] == 1
    retried = [e for e in app.history(run.run_id) if e.type == "run_retried"]
    failed_seq = next(e.seq for e in app.history(run.run_id) if e.type == "run_failed")
    assert [e.data["voids"] for e in retried] == [[failed_seq]]


def test_retry_of_a_run_that_is_not_failed_or_blocked_is_refused(
    app: durable.App, worker: Any
) -> None:
    @app.workflow()
    def waits(ctx: durable.Context) -> Any:
        return (yield ctx.wait_signal("go"))

    pending = app.start(waits)
    with pytest.raises(durable.RunStateError, match="pending"):
        app.retry(pending.run_id)
    with worker(app):
        wait_status(app, pending.run_id, "waiting")
        with pytest.raises(durable.RunStateError, match="waiting"):
            app.retry(pending.run_id)
        app.signal(pending.run_id, "go", 7)
        assert pending.result(timeout=30) == 7
    with pytest.raises(durable.RunStateError, match="completed"):
        app.retry(pending.run_id)
    assert "run_retried" not in types(app, pending.run_id)


# -- rerun and fork ----------------------------------------------------------------------


def test_rerun_starts_a_new_independent_run_with_the_same_arguments(
    app: durable.App, worker: Any
) -> None:
    calls: Counter[str] = Counter()

    @app.step()
    def greet(name: str, n: int) -> str:
        calls["greet"] += 1
        return f"hello {name} x{n}"

    @app.workflow(name="hello")
    def hello(ctx: durable.Context, name: str, n: int) -> str:
        return (yield greet(name, n))

    original = app.start(hello, "ana", 2, idempotency_key="k-1")
    with worker(app):
        assert original.result(timeout=30) == "hello ana x2"
        again = app.rerun(original.run_id)
        assert again.run_id != original.run_id
        assert again.result(timeout=30) == "hello ana x2"
    assert calls["greet"] == 2
    info = app.get_run(again.run_id)
    assert info.source_run_id == original.run_id and info.workflow == "hello"
    assert info.args == ["ana", 2] and info.idempotency_key is None
    assert app.get_run(original.run_id).source_run_id is None
    assert types(app, again.run_id) == ["run_started", "step_completed", "run_completed"]
    # the original is untouched
    assert types(app, original.run_id) == ["run_started", "step_completed", "run_completed"]


def test_fork_copies_the_log_up_to_at_seq_and_does_not_repeat_those_steps(
    app: durable.App, worker: Any
) -> None:
    calls: Counter[str] = Counter()

    @app.step()
    def one(x: int) -> int:
        calls["one"] += 1
        return x + 1

    @app.step()
    def two(x: int) -> int:
        calls["two"] += 1
        return x * 2

    @app.step()
    def three(x: int) -> int:
        calls["three"] += 1
        return x - 3

    @app.workflow()
    def chain(ctx: durable.Context, x: int) -> list[Any]:
        a = yield one(x)
        b = yield two(a)
        c = yield three(b)
        return [a, b, c, ctx.random().random()]

    run = app.start(chain, 5)
    with worker(app):
        result = run.result(timeout=30)
        assert result[:3] == [6, 12, 9]
        history = app.history(run.run_id)
        assert [e.type for e in history] == [
            "run_started",
            "step_completed",
            "step_completed",
            "step_completed",
            "run_completed",
        ]
        for bad in (0, -1, len(history) + 1):
            with pytest.raises(ValueError, match="at_seq"):
                app.fork(run.run_id, bad)
        with pytest.raises(durable.RunNotFound):
            app.fork("no-such-run", 1)

        fork = app.fork(run.run_id, 3)
        assert fork.run_id != run.run_id
        assert fork.result(timeout=30) == result  # same seed: same random value too
        assert calls == Counter(one=1, two=1, three=2)

        from_start = app.fork(run.run_id, 1)
        assert from_start.result(timeout=30) == result
        assert calls == Counter(one=2, two=2, three=3)

    forked = app.history(fork.run_id)
    assert [(e.seq, e.type, e.data) for e in forked[:3]] == [
        (e.seq, e.type, e.data) for e in history[:3]
    ]
    assert [e.type for e in forked[3:]] == ["step_completed", "run_completed"]
    info = app.get_run(fork.run_id)
    assert info.source_run_id == run.run_id and info.args == [5]
    assert app.get_run(run.run_id).status == "completed"
    assert [e.type for e in app.history(run.run_id)] == [e.type for e in history]


# -- prune -------------------------------------------------------------------------------


def test_prune_deletes_ended_runs_before_the_cutoff_in_batches(
    app: durable.App, worker: Any, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.step()
    def work(x: int) -> int:
        return x

    @app.workflow()
    def quick(ctx: durable.Context, x: int) -> int:
        return (yield work(x))

    @app.workflow()
    def one_signal(ctx: durable.Context) -> Any:
        return (yield ctx.wait_signal("go"))

    @app.workflow()
    def broken(ctx: durable.Context) -> Any:
        yield work(0)
        raise RuntimeError("no")

    with worker(app):
        old = [app.start(quick, i).run_id for i in range(3)]
        failed = app.start(broken).run_id
        chatty = app.start(one_signal).run_id
        wait_status(app, chatty, "waiting")
        app.signal(chatty, "go", 1)
        app.signal(chatty, "go", 2)  # left unconsumed in the inbox
        for rid in old:
            wait_status(app, rid, "completed")
        wait_status(app, failed, "failed")
        wait_status(app, chatty, "completed")
        doomed = [*old, failed, chatty]
        cutoff = db_now(dsn)
        recent = app.start(quick, 99).run_id
        waiting = app.start(one_signal).run_id
        wait_status(app, recent, "completed")
        wait_status(app, waiting, "waiting")
    pending = app.start(quick, 7, delay=3600).run_id

    events_doomed = sum(len(app.history(rid)) for rid in doomed)
    kept = [recent, waiting, pending]
    events_kept = sum(len(app.history(rid)) for rid in kept)
    assert count(dsn, "SELECT count(*) FROM durable.signals WHERE run_id = %s", chatty) == 1

    so_far: list[int] = []  # runs pruned after each batch of at most 2
    pauses: list[float] = []  # the waits between batches (by default: each batch's time)
    real_sleep = time.sleep
    monkeypatch.setattr(
        "durable.client._client.time.sleep", lambda s: (pauses.append(s), real_sleep(s))
    )
    result = app.prune(cutoff, batch=2, progress=lambda total: so_far.append(total.runs))
    assert (result.runs, result.events, result.signals) == (5, events_doomed, 1)
    assert so_far == [2, 4, 5]
    assert len(pauses) == 3 and all(0 < s < 5 for s in pauses)  # after each full batch

    for rid in doomed:
        with pytest.raises(durable.RunNotFound):
            app.get_run(rid)
        with pytest.raises(durable.RunNotFound):
            app.history(rid)
    assert count(dsn, "SELECT count(*) FROM durable.events WHERE run_id = ANY(%s)", doomed) == 0
    assert count(dsn, "SELECT count(*) FROM durable.signals") == 0
    assert sorted(r.run_id for r in app.list_runs().runs) == sorted(kept)
    assert sum(len(app.history(rid)) for rid in kept) == events_kept

    assert app.prune(cutoff, batch=2) == durable.PruneResult()
    pauses.clear()
    assert app.prune(cutoff, batch=2, pause=0) == durable.PruneResult()
    assert pauses == []  # nothing was deleted: no batch to rest after
    with pytest.raises(ValueError, match="pause"):
        app.prune(cutoff, pause=-1)
    assert app.prune(timedelta(days=1)) == durable.PruneResult()
    assert app.prune(3600.0) == durable.PruneResult()
    with pytest.raises(ValueError, match="aware"):
        app.prune(datetime(2000, 1, 1))
    # an age of zero prunes everything that has ended, nothing that has not
    assert app.prune(0).runs == 1
    assert sorted(r.run_id for r in app.list_runs().runs) == sorted([waiting, pending])


# -- the blocked cycle (issue 6.4) -------------------------------------------------------


def build(dsn: str, version: str, calls: Counter[str]) -> durable.App:
    """The same workflow name deployed in three versions: v1 (the original), v2 (a change
    that does not match v1's logs), v3 (the fix: compatible with v1's logs)."""
    app = durable.App(dsn)

    @app.step(name="charge")
    def charge(cents: int) -> str:
        calls["charge"] += 1
        return f"receipt-{cents}"

    @app.step(name="audit")
    def audit(cents: int) -> str:
        calls["audit"] += 1
        return f"audited-{cents}"

    @app.step(name="ship")
    def ship(receipt: str, by: str) -> str:
        calls["ship"] += 1
        return f"{receipt} shipped, approved by {by}"

    if version == "v1":

        @app.workflow(name="order")
        def order_v1(ctx: durable.Context, cents: int) -> str:
            receipt = yield charge(cents)
            decision = yield ctx.wait_signal("approve")
            return (yield ship(receipt, decision["by"]))

    elif version == "v2":

        @app.workflow(name="order")
        def order_v2(ctx: durable.Context, cents: int) -> str:
            note = yield audit(cents)  # v2: not what v1 recorded
            decision = yield ctx.wait_signal("approve")
            return (yield ship(note, decision["by"]))

    else:

        @app.workflow(name="order")
        def order_v3(ctx: durable.Context, cents: int) -> str:
            receipt = yield charge(cents)
            decision = yield ctx.wait_signal("approve")
            return (yield ship(receipt, decision["by"]))

    return app


@pytest.fixture
def deploy(dsn: str) -> Iterator[Callable[[str, Counter[str]], durable.App]]:
    apps: list[durable.App] = []

    def make(version: str, calls: Counter[str]) -> durable.App:
        app = build(dsn, version, calls)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def test_code_change_blocks_a_run_and_retry_after_the_fix_completes_it(
    deploy: Callable[[str, Counter[str]], durable.App], worker: Any, dsn: str
) -> None:
    calls: Counter[str] = Counter()
    v1 = deploy("v1", calls)
    run = v1.start("order", 1999)
    with worker(v1):
        wait_status(v1, run.run_id, "waiting")
    assert calls == Counter(charge=1)

    v2 = deploy("v2", calls)
    with worker(v2, cache_size=0):
        v2.signal(run.run_id, "approve", {"by": "ana"})
        wait_status(v2, run.run_id, "blocked")
        info = v2.get_run(run.run_id)
        assert info.error is not None
        assert info.error["error_type"] == "durable.NonDeterminismError"
        message = info.error["message"]
        assert "workflow 'order'" in message
        assert "position 1" in message
        assert "the log recorded step 'charge'" in message
        assert "the code yielded step 'audit'" in message
        assert f"{HERE.name}:{line_of('# v2: not what v1 recorded')}" in message
        assert "order_v2" in message
        blocked = v2.list_runs(status="blocked")
        assert [r.run_id for r in blocked.runs] == [run.run_id] and blocked.total == 1
        assert v2.stats()["by_status"] == {"blocked": 1}
        history = v2.history(run.run_id)
        assert history[-1].type == "run_blocked" and history[-1].data["message"] == message
        # retrying without a fix blocks it again, with the same message
        v2.retry(run.run_id)
        wait_for(
            lambda: types(v2, run.run_id)[-2:] == ["run_retried", "run_blocked"],
            what="blocked again",
        )
        assert v2.get_run(run.run_id).status == "blocked"
        assert v2.get_run(run.run_id).error == info.error
    # nothing of v2's code ran, and the signal is still waiting in the inbox
    assert calls == Counter(charge=1)
    assert [e.type for e in history] == [
        "run_started",
        "step_completed",
        "wait_started",
        "run_blocked",
    ]
    assert types(v2, run.run_id)[4:] == ["run_retried", "run_blocked"]
    inbox = "SELECT count(*) FROM durable.signals WHERE run_id = %s"
    assert count(dsn, inbox, run.run_id) == 1

    v3 = deploy("v3", calls)
    with worker(v3, cache_size=0):
        v3.retry(run.run_id)
        assert v3.handle(run.run_id).result(timeout=30) == "receipt-1999 shipped, approved by ana"
    assert calls == Counter(charge=1, ship=1)  # charge was not executed again
    info = v3.get_run(run.run_id)
    assert info.status == "completed" and info.error is None
    assert types(v3, run.run_id) == [
        "run_started",
        "step_completed",
        "wait_started",
        "run_blocked",
        "run_retried",
        "run_blocked",
        "run_retried",
        "signal_received",
        "step_completed",
        "run_completed",
    ]
    retried = [e.data for e in v3.history(run.run_id) if e.type == "run_retried"]
    assert retried == [{"voids": []}, {"voids": []}]
    assert v3.list_runs(status="blocked").total == 0
    assert count(dsn, inbox, run.run_id) == 0


# -- errors for unknown and finished runs ------------------------------------------------


def test_unknown_run_ids_raise_run_not_found(app: durable.App) -> None:
    @app.workflow()
    def noop(ctx: durable.Context) -> None:
        return None
        yield

    operations: dict[str, Callable[[str], object]] = {
        "get_run": app.get_run,
        "history": app.history,
        "pause": app.pause,
        "resume": app.resume,
        "cancel": app.cancel,
        "retry": app.retry,
        "signal": lambda rid: app.signal(rid, "go", 1),
        "rerun": app.rerun,
        "fork": lambda rid: app.fork(rid, 1),
        "status": lambda rid: app.handle(rid).status(),
        "result": lambda rid: app.handle(rid).result(timeout=1),
    }
    for name, operation in operations.items():
        with pytest.raises(durable.RunNotFound) as missing:
            operation("no-such-run")
        assert missing.value.run_id == "no-such-run", name
        assert "no-such-run" in str(missing.value), name
    assert app.list_runs().total == 0


def test_signal_pause_resume_cancel_to_a_finished_run_raise_run_not_active(
    app: durable.App, worker: Any
) -> None:
    @app.workflow()
    def done(ctx: durable.Context) -> int:
        return (yield ctx.wait_signal("go"))

    run = app.start(done)
    with worker(app):
        app.signal(run.run_id, "go", 3)
        assert run.result(timeout=30) == 3
    operations: dict[str, Callable[[], object]] = {
        "signal": lambda: app.signal(run.run_id, "go", 4),
        "pause": lambda: app.pause(run.run_id),
        "resume": lambda: app.resume(run.run_id),
        "cancel": lambda: app.cancel(run.run_id, "late"),
    }
    before = app.history(run.run_id)
    for name, operation in operations.items():
        with pytest.raises(durable.RunNotActive) as inactive:
            operation()
        assert inactive.value.run_id == run.run_id, name
        assert inactive.value.status == "completed", name
    assert app.history(run.run_id) == before
    assert app.get_run(run.run_id).status == "completed"


def test_retry_refuses_a_run_that_compensated_before_failing(app: durable.App, worker: Any) -> None:
    """A workflow that caught a step failure, recorded compensation and re-raised cannot
    be retried from the failed step (that would undo the compensation's meaning): retry
    says so and changes nothing; rerun is the way to start over."""

    @app.step(retry=None)
    def charge() -> None:
        raise ValueError("declined")

    @app.step()
    def release_stock() -> str:
        return "released"

    @app.workflow()
    def saga(ctx: durable.Context) -> None:
        try:
            yield charge()
        except durable.StepFailed:
            yield release_stock()
            raise

    run = app.start(saga)
    with worker(app), pytest.raises(durable.RunFailed):
        run.result(timeout=30)
    before = [e.type for e in app.history(run.run_id)]
    with pytest.raises(durable.RunStateError, match="rerun") as info:
        app.retry(run.run_id)
    assert info.value.run_id == run.run_id and info.value.status == "failed"
    assert [e.type for e in app.history(run.run_id)] == before
    assert app.get_run(run.run_id).status == "failed"


def test_export_is_the_run_and_its_log_as_json(
    app: durable.App, worker: Any, tmp_path: Any
) -> None:
    import json
    import os
    import subprocess
    import sys

    @app.step()
    def double(x: int) -> int:
        return 2 * x

    @app.workflow(name="exported")
    def exported(ctx: durable.Context, x: int) -> int:
        return (yield double(x))

    run = app.start(exported, 21)
    with worker(app):
        assert run.result(timeout=30) == 42
    doc = app.export(run.run_id)
    assert doc["format"] == "pgdurable.export/1"
    assert doc["run"]["run_id"] == run.run_id and doc["run"]["status"] == "completed"
    assert [e["type"] for e in doc["events"]] == [
        "run_started", "step_completed", "run_completed"
    ]  # fmt: skip
    assert doc["events"][0]["data"]["args"] == [21]
    json.dumps(doc)  # JSON-compatible throughout
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    env.update(DURABLE_DSN=app.dsn, DURABLE_HOME=str(tmp_path / "home"))
    printed = subprocess.run(
        [sys.executable, "-m", "durable", "export", run.run_id[:8]],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == doc
