"""Schedules on real PostgreSQL: firing, ctx.scheduled_at, overlap, catch-up after
downtime, and the operations (trigger, backfill, pause, resume, delete, list)."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import durable
from tests.integration.waiting import wait_for


def _tick_runs(app: durable.App, name: str) -> list[durable.RunInfo]:
    runs = app.list_runs(search=f"{name}@", limit=1000).runs
    return sorted((r for r in runs if r.run_id.startswith(f"{name}@")), key=lambda r: r.run_id)


def test_a_schedule_fires_each_tick_once_with_its_tick(app: durable.App, worker: Any) -> None:
    seen: list[tuple[str, datetime | None]] = []

    @app.workflow(name="tick")
    def tick(ctx: durable.Context, label: str) -> str:
        seen.append((ctx.run_id, ctx.scheduled_at))
        return label
        yield  # a generator

    app.schedule("every1", tick, every=1, args=("hello",))
    with worker(app):
        wait_for(lambda: len(seen) >= 3, timeout=30)
    runs = _tick_runs(app, "every1")
    assert len(runs) >= 3
    for run_id, scheduled_at in seen:
        assert scheduled_at is not None and scheduled_at.tzinfo is not None
        assert run_id == f"every1@{scheduled_at.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    ticks = sorted(s for _, s in seen if s is not None)
    assert all((b - a) == timedelta(seconds=1) for a, b in itertools.pairwise(ticks))
    assert {r.result for r in runs if r.status == "completed"} == {"hello"}
    (info,) = app.list_schedules()
    assert info.name == "every1" and info.every == 1.0 and not info.paused
    assert len(info.next_fire_times) == 5
    assert info.last_run_id == runs[-1].run_id


def test_operations(app: durable.App, worker: Any) -> None:
    @app.workflow(name="report")
    def report(ctx: durable.Context) -> str:
        return ctx.scheduled_at.isoformat() if ctx.scheduled_at else "none"
        yield  # a generator

    app.schedule("nightly", report, cron="0 3 * * *", timezone="Europe/Berlin")
    with worker(app):
        wait_for(lambda: app.list_schedules(), timeout=30)  # the worker wrote it
        handle = app.trigger_schedule("nightly")
        assert handle.run_id.startswith("nightly@")
        start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC)
        backfilled = app.backfill_schedule("nightly", start, end)
        assert [h.run_id for h in backfilled] == [
            "nightly@2026-11-01T02:00:00Z",
            "nightly@2026-11-02T02:00:00Z",
            "nightly@2026-11-03T02:00:00Z",
        ]
        assert app.backfill_schedule("nightly", start, end) == []  # nothing new
        assert backfilled[0].result(timeout=30) == "2026-11-01T02:00:00+00:00"
        handle.result(timeout=30)
    (info,) = app.list_schedules()
    assert info.last_run_id == handle.run_id  # backfills do not count as the last run
    assert info.next_fire_times[0].astimezone(UTC).hour in (2, 3)  # 03:00 Berlin
    app.pause_schedule("nightly")
    (info,) = app.list_schedules()
    assert info.paused and info.next_fire_times == []
    app.resume_schedule("nightly")
    assert not app.list_schedules()[0].paused
    app.delete_schedule("nightly")
    assert app.list_schedules() == []
    with pytest.raises(durable.ScheduleNotFound, match="no schedule named 'nightly'"):
        app.pause_schedule("nightly")
    with pytest.raises(durable.ScheduleNotFound):
        app.delete_schedule("nightly")


def test_bad_declarations_raise_at_once(app: durable.App) -> None:
    @app.workflow(name="wf")
    def wf(ctx: durable.Context, n: int) -> None:
        return None
        yield  # a generator

    with pytest.raises(ValueError, match="bad cron expression"):
        app.schedule("s", wf, cron="0 25 * * *", args=(1,))
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Atlantis'"):
        app.schedule("s", wf, cron="0 3 * * *", timezone="Europe/Atlantis", args=(1,))
    with pytest.raises(TypeError, match="wrong arguments for workflow 'wf'"):
        app.schedule("s", wf, every=60)
    with pytest.raises(durable.SerializationError):
        app.schedule("s", wf, every=60, args=(object(),))
    with pytest.raises(durable.WorkflowNotFound):
        app.schedule("s", "nope", every=60)
    assert app.registry.schedules == {}


def _blocking(app: durable.App, gate: threading.Event) -> Any:
    @app.step()
    def hold() -> None:
        gate.wait(30)

    @app.workflow(name="slow")
    def slow(ctx: durable.Context) -> str:
        yield hold()
        return "done"

    return slow


@pytest.mark.parametrize(
    "policy", ["skip", "buffer_one", "buffer_all", "cancel_other", "allow_all"]
)
def test_overlap_policies(app: durable.App, worker: Any, policy: str) -> None:
    gate = threading.Event()
    slow = _blocking(app, gate)
    app.schedule("s", slow, every=1, overlap=policy)

    def ticks_before(moment: datetime) -> list[str]:
        return [r.run_id for r in _tick_runs(app, "s") if _tick(r.run_id) < moment]

    try:
        with worker(app, concurrency=8):
            wait_for(lambda: _tick_runs(app, "s"), timeout=30)
            first = _tick_runs(app, "s")[0].run_id
            time.sleep(2.6)  # two or three more ticks while the first run holds
            released = datetime.now(UTC).replace(microsecond=0)
            gate.set()
            ticks = int((released - _tick(first)).total_seconds())  # the hold's, with first
            assert ticks >= 2
            # what the ticks of the hold become: skip none, buffer_one one more (when the
            # first ends), the others every one (buffer_all one after another)
            want = {"skip": 1, "buffer_one": 2}.get(policy, ticks)
            wait_for(lambda: len(ticks_before(released)) >= want, timeout=30)
            time.sleep(1.2)  # and no more than that
            held = ticks_before(released)
    finally:
        gate.set()
    statuses = {r.run_id: r.status for r in _tick_runs(app, "s")}
    assert len(held) == want
    if policy == "skip":
        assert held == [first]
    assert (statuses[first] == "cancelled") is (policy == "cancel_other")


def _tick(run_id: str) -> datetime:
    return datetime.fromisoformat(run_id.split("@", 1)[1].replace("Z", "+00:00"))


def test_catch_up_after_downtime_starts_only_recent_ticks(
    app: durable.App, dsn: str, worker: Any
) -> None:
    @app.workflow(name="beat")
    def beat(ctx: durable.Context) -> None:
        return None
        yield  # a generator

    app.schedule("short", beat, every=10, overlap="allow_all", catchup_window=35)
    app.schedule("long", beat, every=10, overlap="allow_all", catchup_window=600)
    with worker(app):
        wait_for(lambda: len(app.list_schedules()) == 2, timeout=30)
    # The workers were down for two minutes: move both schedules' next tick back.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE durable.schedules SET next_fire_at = to_timestamp("
            "  floor(extract(epoch FROM now()) / 10) * 10 - 120), due_at = now() - interval '1s'"
        )
        before = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT name, count(*) FROM durable.runs r JOIN durable.schedules s"
                " ON r.run_id LIKE s.name || '@%' GROUP BY name"
            )
        }
    with worker(app):
        wait_for(lambda: app.list_schedules()[0].next_fire_times[0] > datetime.now(UTC), 30)
        time.sleep(0.5)
    after = {name: len(_tick_runs(app, name)) for name in ("short", "long")}
    caught_short = after["short"] - before.get("short", 0)
    caught_long = after["long"] - before.get("long", 0)
    assert 3 <= caught_short <= 5  # the ticks of the last 35 s (and maybe a new one)
    assert 13 <= caught_long <= 15  # all 13 missed ticks


def test_durable_schedules_cli(app: durable.App, dsn: str, tmp_path: Any) -> None:
    import json

    from tests.integration.test_queues import _durable

    @app.workflow(name="report")
    def report(ctx: durable.Context) -> None:
        return None
        yield  # a generator

    app.schedule("nightly-report", report, cron="0 3 * * *", timezone="Europe/Berlin")
    app.schedule("poll", report, every=300)
    for schedule in app.registry.schedules.values():
        app.client.put_schedule(schedule)  # what a worker does when it starts
    listed = _durable(dsn, tmp_path, "schedules")
    assert listed.returncode == 0, listed.stderr
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80
    assert "0 3 * * * Europe/Berlin, skip" in listed.stdout
    assert "every 5m" in listed.stdout
    as_json = json.loads(_durable(dsn, tmp_path, "schedules", "--json").stdout)
    assert [s["name"] for s in as_json] == ["nightly-report", "poll"]
    assert len(as_json[0]["next_fire_times"]) == 5
    paused = _durable(dsn, tmp_path, "schedules", "pause", "poll")
    assert paused.stdout.strip() == "schedule 'poll' paused"
    assert "paused" in _durable(dsn, tmp_path, "schedules").stdout
    triggered = _durable(dsn, tmp_path, "schedules", "trigger", "poll")
    assert triggered.stdout.strip().startswith("poll@")
    backfill = [
        "schedules", "backfill", "nightly-report",
        "--start", "2026-11-01T00:00Z", "--end", "2026-11-03T00:00Z",
    ]  # fmt: skip
    filled = _durable(dsn, tmp_path, *backfill)
    assert filled.stdout.splitlines() == [
        "nightly-report@2026-11-01T02:00:00Z",
        "nightly-report@2026-11-02T02:00:00Z",
        "2 run(s) started",
    ]
    assert _durable(dsn, tmp_path, *backfill).stdout.strip() == "0 run(s) started"
    missing = _durable(dsn, tmp_path, "schedules", "pause")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "error: durable schedules pause needs the schedule's NAME"
    unknown = _durable(dsn, tmp_path, "schedules", "trigger", "nope")
    assert unknown.stderr.strip().splitlines() == [
        "error: no schedule named 'nope' (durable schedules lists them)"
    ]
    bad = _durable(dsn, tmp_path, "schedules", "backfill", "poll", "--start", "x", "--end", "y")
    assert "--start takes an ISO date-time" in bad.stderr


def test_a_schedule_this_worker_cannot_read_does_not_stop_the_others(
    app: durable.App, dsn: str, worker: Any, caplog: Any
) -> None:
    @app.workflow(name="beat")
    def beat(ctx: durable.Context) -> None:
        return None
        yield  # a generator

    with psycopg.connect(dsn, autocommit=True) as conn:  # as a newer tzdata could write it
        conn.execute(
            "INSERT INTO durable.schedules (name, workflow, cron, timezone, next_fire_at, due_at)"
            " VALUES ('alien', 'beat', '* * * * *', 'Mars/Olympus', now(), now())"
        )
    app.schedule("good", beat, every=1)
    with worker(app):
        wait_for(lambda: len(_tick_runs(app, "good")) >= 2, timeout=30)
    assert "schedule 'alien' cannot fire here" in caplog.text
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT due_at > now() + interval '30 s' FROM durable.schedules WHERE name = 'alien'"
        ).fetchone()
    assert row == (True,)  # looked at again in a minute, not in a loop
    assert _tick_runs(app, "alien") == []
