"""Queues: concurrency, per-worker and per-key limits, a rate limit, priorities, dedup,
the declarations in the database, and ``pending_reason``."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest

import durable
from tests.integration.waiting import wait_for


class Spans:
    """When each run's step ran, recorded by the step itself."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: dict[str, tuple[float, float]] = {}
        self.order: list[str] = []

    def record(self, key: str, seconds: float) -> None:
        start = time.monotonic()
        with self.lock:
            self.order.append(key)
        time.sleep(seconds)
        with self.lock:
            self.spans[key] = (start, time.monotonic())

    def max_overlap(self, keys: list[str] | None = None) -> int:
        events = []
        for key, (start, end) in self.spans.items():
            if keys is None or key in keys:
                events += [(start, 1), (end, -1)]
        best = now = 0
        for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
            now += delta
            best = max(best, now)
        return best


def _work(app: durable.App, spans: Spans, queue: str | None = None) -> Any:
    @app.step()
    def hold(key: str, seconds: float) -> str:
        spans.record(key, seconds)
        return key

    @app.workflow(name=f"work-{queue}", queue=queue)
    def work(ctx: durable.Context, key: str, seconds: float) -> str:
        return (yield hold(key, seconds))

    return work


def test_concurrency_holds_across_two_workers(app: durable.App, worker: Any) -> None:
    spans = Spans()
    app.queue("q", concurrency=2)
    work = _work(app, spans, "q")
    runs = [app.start(work, f"r{i}", 0.3) for i in range(8)]
    assert app.get_run(runs[0].run_id).queue == "q"
    with worker(app, concurrency=4), worker(app, concurrency=4):
        for r in runs:
            r.result(timeout=60)
    assert spans.max_overlap() == 2


def test_worker_concurrency_is_per_worker(app: durable.App, worker: Any) -> None:
    spans = Spans()
    app.queue("q", worker_concurrency=1)
    work = _work(app, spans, "q")
    runs = [app.start(work, f"r{i}", 0.3) for i in range(6)]
    with worker(app, concurrency=4):
        for r in runs[:3]:
            r.result(timeout=60)
        assert spans.max_overlap() == 1  # one worker: one at a time
        with worker(app, concurrency=4):
            for r in runs[3:]:
                r.result(timeout=60)
    assert spans.max_overlap() <= 2


def test_priority_then_creation_order(app: durable.App, worker: Any) -> None:
    spans = Spans()
    app.queue("q", concurrency=1)
    work = _work(app, spans, "q")
    for key, priority in [("low-1", 5), ("high-1", 1), ("mid", 3), ("high-2", 1), ("low-2", 5)]:
        app.start(work, key, 0.01, priority=priority)
    with worker(app):
        wait_for(lambda: len(spans.spans) == 5, timeout=60)
    assert spans.order == ["high-1", "high-2", "mid", "low-1", "low-2"]


def test_a_full_key_does_not_block_other_keys(app: durable.App, worker: Any) -> None:
    spans = Spans()
    app.queue("q", key_concurrency=1)
    work = _work(app, spans, "q")
    backlog = [app.start(work, f"a{i}", 0.4, concurrency_key="tenant-a") for i in range(4)]
    late = app.start(work, "b0", 0.01, concurrency_key="tenant-b")
    with worker(app, concurrency=8):
        late.result(timeout=60)
        # tenant b's run, created after tenant a's backlog, finished while a's waited
        assert len([k for k in spans.spans if k.startswith("a")]) < len(backlog)
        for r in backlog:
            r.result(timeout=60)
    assert spans.max_overlap([f"a{i}" for i in range(4)]) == 1


def test_the_rate_limit_holds_in_every_window(app: durable.App, worker: Any) -> None:
    spans = Spans()
    app.queue("q", rate_limit=durable.Rate(3, per=1.0))
    work = _work(app, spans, "q")
    runs = [app.start(work, f"r{i}", 0.0) for i in range(9)]
    with worker(app, concurrency=8):
        for r in runs:
            r.result(timeout=60)
    starts = sorted(app.get_run(r.run_id).started_at for r in runs)  # type: ignore[type-var]
    for i, first in enumerate(starts):
        in_window = [s for s in starts[i:] if s - first < timedelta(seconds=1.0)]
        assert len(in_window) <= 3, f"{len(in_window)} starts within 1s of {first}"
    assert starts[-1] - starts[0] >= timedelta(seconds=2.0)  # 9 starts at 3/s: >= 2 s


def test_dedup_while_active(app: durable.App, worker: Any) -> None:
    spans = Spans()
    app.queue("q")
    work = _work(app, spans, "q")
    first = app.start(work, "a", 0.01, dedup_key="welcome:ana")
    again = app.start(work, "b", 0.01, dedup_key="welcome:ana")
    assert first.created and not again.created and again.run_id == first.run_id
    other_queue = app.start(work, "c", 0.01, dedup_key="welcome:ana", queue="elsewhere")
    assert other_queue.created  # dedup is per queue
    with worker(app):
        first.result(timeout=30)
        other_queue.result(timeout=30)
        later = app.start(work, "d", 0.01, dedup_key="welcome:ana")  # free again
        assert later.created and later.run_id != first.run_id
        later.result(timeout=30)


def test_declarations_live_in_the_database_and_latest_wins(
    app: durable.App, dsn: str, worker: Any
) -> None:
    spans = Spans()
    app.queue("q", concurrency=1)
    work = _work(app, spans, "q")
    app.start(work, "r0", 0.01)  # the first operation writes the declarations
    other = durable.App(dsn)
    other.queue("q", concurrency=3, rate_limit=durable.Rate(10, per=60))
    other.stats()
    (info,) = app.queues()
    assert (info.name, info.concurrency, info.rate_limit) == ("q", 3, durable.Rate(10, per=60))
    app.queue("q", concurrency=2)  # the App is open: written at once
    (info,) = other.queues()
    assert (info.concurrency, info.rate_limit) == (2, None)
    other.close()


def test_a_limit_changed_at_run_time_is_followed(app: durable.App, worker: Any) -> None:
    spans = Spans()
    app.queue("q", concurrency=1)
    work = _work(app, spans, "q")
    first = [app.start(work, f"a{i}", 0.2) for i in range(3)]
    with worker(app, concurrency=8):
        for r in first:
            r.result(timeout=60)
        assert spans.max_overlap() == 1
        app.client.update_queue("q", concurrency=3)  # what `durable queues set` does
        second = [app.start(work, f"b{i}", 0.5) for i in range(3)]
        for r in second:
            r.result(timeout=60)
    assert spans.max_overlap([f"b{i}" for i in range(3)]) == 3


def test_pending_reason_says_why(app: durable.App, worker: Any) -> None:
    gate = threading.Event()

    @app.step()
    def blocked() -> None:
        gate.wait(30)

    @app.workflow(name="held", queue="q")
    def held(ctx: durable.Context) -> None:
        yield blocked()

    @app.workflow(name="keyed", queue="keyed")
    def keyed(ctx: durable.Context) -> None:
        yield blocked()

    @app.workflow(name="rated", queue="rated")
    def rated(ctx: durable.Context) -> None:
        return None
        yield  # a generator

    app.queue("q", concurrency=1)
    app.queue("keyed", key_concurrency=1)
    app.queue("rated", rate_limit=durable.Rate(1, per=60))
    nobody = app.start(held)
    assert app.get_run(nobody.run_id).pending_reason == "no live worker registers workflow 'held'"
    later = app.start(held, delay=3600)
    assert (app.get_run(later.run_id).pending_reason or "").startswith("deferred until ")
    second = app.start(held)
    k1 = app.start(keyed, concurrency_key="t1")
    k2 = app.start(keyed, concurrency_key="t1")
    r1, r2 = app.start(rated), app.start(rated)
    try:
        with worker(app, concurrency=8):
            wait_for(lambda: app.get_run(nobody.run_id).status == "running", timeout=30)
            wait_for(lambda: app.get_run(k1.run_id).status == "running", timeout=30)
            r1.result(timeout=30)
            assert app.get_run(second.run_id).pending_reason == "queue 'q': 1 of 1 slots taken"
            assert (
                app.get_run(k2.run_id).pending_reason
                == "key 't1' of queue 'keyed': 1 of 1 slots taken"
            )
            reason = app.get_run(r2.run_id).pending_reason or ""
            assert reason.startswith("rate limit of queue 'rated' (1 per 60s): next start in ")
            queues = {q.name: q for q in app.queues()}
            assert (queues["q"].running, queues["q"].pending) == (1, 2)  # one is deferred
            assert queues["keyed"].busiest_keys == {"t1": {"running": 1, "pending": 1}}
            (me,) = app.workers()
            assert me.queues == ["keyed", "q", "rated"]
            gate.set()
            second.result(timeout=30)
    finally:
        gate.set()
    assert app.get_run(second.run_id).pending_reason is None


def test_bad_queue_options_are_refused(app: durable.App) -> None:
    @app.workflow()
    def wf(ctx: durable.Context) -> None:
        return None
        yield  # a generator

    with pytest.raises(durable.InvalidArgument, match="priority must be an int"):
        app.start(wf, priority="high")
    with pytest.raises(durable.InvalidArgument, match="queue must be"):
        app.start(wf, queue="")
    with pytest.raises(ValueError, match="concurrency must be a positive int"):
        app.queue("x", concurrency=0)
    with pytest.raises(TypeError, match=r"durable\.Rate"):
        app.queue("x", rate_limit=100)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Rate limit must be a positive int"):
        durable.Rate(0, per=1)
    assert app.stats()["total"] == 0


def _durable(dsn: str, tmp_path: Any, *args: str) -> Any:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    env.update(DURABLE_DSN=dsn, DURABLE_HOME=str(tmp_path / "home"), COLUMNS="80")
    return subprocess.run(
        [sys.executable, "-m", "durable", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )


def test_durable_queues_shows_and_changes_limits(app: durable.App, dsn: str, tmp_path: Any) -> None:
    @app.workflow(name="mail", queue="emails")
    def mail(ctx: durable.Context, to: str) -> None:
        return None
        yield  # a generator

    app.queue("emails", concurrency=10, key_concurrency=1, rate_limit=durable.Rate(100, per=60))
    run = app.start(mail, "a@b.c", concurrency_key="tenant-7", priority=2)
    listed = _durable(dsn, tmp_path, "queues")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    row = next(line for line in lines if line.startswith("emails"))
    assert row.split()[:3] == ["emails", "0/10", "1"]
    assert "rate 100/60s" in listed.stdout
    assert "key tenant-7" in listed.stdout
    changed = _durable(
        dsn, tmp_path, "queues", "set", "emails", "--concurrency", "3", "--rate", "none"
    )
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip() == "queue 'emails': concurrency 3, per key 1"
    (info,) = app.queues()
    assert (info.concurrency, info.key_concurrency, info.rate_limit) == (3, 1, None)
    bad = _durable(dsn, tmp_path, "queues", "set", "emails", "--concurrency", "zero")
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines() == [
        "error: --concurrency takes a positive whole number or none, not 'zero'"
    ]
    missing = _durable(dsn, tmp_path, "queues", "set", "nope", "--concurrency", "1")
    assert "no queue named 'nope'" in missing.stderr
    as_json = _durable(dsn, tmp_path, "queues", "--json")
    import json

    (q,) = json.loads(as_json.stdout)
    assert (q["name"], q["concurrency"], q["pending"]) == ("emails", 3, 1)
    shown = _durable(dsn, tmp_path, "show", run.run_id)
    assert "queue        emails (priority 2, key tenant-7)" in shown.stdout
    assert "no live worker registers workflow 'mail'" in shown.stdout


def test_a_retried_run_still_counts_its_first_start_in_the_rate_window(
    app: durable.App, worker: Any
) -> None:
    attempts: list[int] = []

    @app.step(retry=None)
    def once_broken() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("broken")
        return "fixed"

    @app.workflow(name="rated", queue="rated")
    def rated(ctx: durable.Context) -> str:
        return (yield once_broken())

    app.queue("rated", rate_limit=durable.Rate(1, per=60))
    run = app.start(rated)
    with worker(app):
        with pytest.raises(durable.RunFailed):
            run.result(timeout=30)
        app.retry(run.run_id)
        time.sleep(1.0)  # a worker would have started it by now without the window
        info = app.get_run(run.run_id)
    assert info.status == "waiting" and len(attempts) == 1
    assert (info.pending_reason or "").startswith("rate limit of queue 'rated' (1 per 60s)")


def test_durable_workers_shows_the_queues_a_worker_serves(
    app: durable.App, dsn: str, worker: Any, tmp_path: Any
) -> None:
    import json

    @app.workflow(name="mail", queue="emails")
    def mail(ctx: durable.Context) -> None:
        return None
        yield  # a generator

    app.queue("reports", concurrency=2)
    with worker(app):
        wait_for(lambda: app.workers(), timeout=30)
        listed = _durable(dsn, tmp_path, "workers", "--json")
        table = _durable(dsn, tmp_path, "workers")
    (w,) = json.loads(listed.stdout)
    assert (w["workflows"], w["queues"]) == (["mail"], ["emails", "reports"])
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    assert "workflows mail" in table.stdout and "queues emails, reports" in table.stdout


def test_unqueued_starts_spare_the_queued_claim_and_queued_starts_get_it(
    app: durable.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start of an unqueued run wakes the worker with "new unqueued": the claim loop
    leaves the queues' statement out (it costs more than the plain claim). A queued start
    names its run, so the queued claim runs at once, long before the next poll."""
    from durable.store import LeaseStore

    calls: list[float] = []
    original = LeaseStore.claim_queued

    def counting(self: LeaseStore, *args: Any, **kwargs: Any) -> Any:
        calls.append(time.monotonic())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LeaseStore, "claim_queued", counting)

    @app.workflow(name="plain")
    def plain(ctx: durable.Context, i: int) -> Any:
        yield ctx.sleep(0)
        return i

    @app.workflow(name="queued", queue="q")
    def queued(ctx: durable.Context) -> Any:
        yield ctx.sleep(0)
        return "admitted"

    with app.worker(concurrency=4, poll_interval=30.0):
        wait_for(lambda: len(calls) >= 1)  # the first look, at start-up
        before = len(calls)
        handles = [app.start(plain, i) for i in range(20)]
        assert [h.result(timeout=20) for h in handles] == list(range(20))
        assert len(calls) == before  # 20 unqueued starts, no queued claim
        started = time.monotonic()
        assert app.start(queued).result(timeout=20) == "admitted"
        assert time.monotonic() - started < 15  # not the 30 s poll
        assert len(calls) > before
