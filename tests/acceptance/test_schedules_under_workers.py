"""A one-second schedule fired by three worker processes: one run per tick, none missed
and none twice; across a worker SIGKILL and a PostgreSQL restart it keeps firing and
catches up the ticks of the outage."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import schedule_app
from acceptance_helpers import Db, WorkerFleet, create_table, wait_until
from test_postgres_restart import _server_up, _stop_server, own_server

from durable._embedded import embedded_start

__all__ = ["own_server"]  # the fixture: a server of this test's own, to restart

SECONDS = float(os.environ.get("SCHEDULE_STRESS_SECONDS", "10"))


def _every_tick_once(db: Db, since: datetime, until: datetime) -> list[datetime]:
    """The ticks of ``beat`` in [since, until], each with exactly one run."""
    runs = db.rows("SELECT run_id FROM durable.runs WHERE workflow = 'beat' ORDER BY run_id")
    ticks = sorted(
        datetime.fromisoformat(r["run_id"].split("@", 1)[1].replace("Z", "+00:00")) for r in runs
    )
    inside = [t for t in ticks if since <= t <= until]
    assert len(inside) == len(set(inside))
    expected = int((until - since).total_seconds()) + 1
    assert len(inside) == expected, f"{len(inside)} runs for {expected} ticks in {since}..{until}"
    return inside


def test_three_workers_fire_each_tick_once(dsn: str, make_fleet: Any) -> None:
    create_table(dsn, schedule_app.TICKS_TABLE)
    db = Db(dsn)
    fleet: WorkerFleet = make_fleet(dsn, app="schedule_app:app", concurrency=4)
    try:
        fleet.start(3)
        first = wait_until(
            lambda: db.value("SELECT min(tick) FROM public.ticks"),
            timeout=60,
            what="the first tick",
            diagnose=fleet.tails,
        )
        time.sleep(SECONDS)
        fleet.check_alive()
        last = db.value("SELECT max(tick) FROM public.ticks")
        _every_tick_once(db, first, last - timedelta(seconds=1))
        # every run ran its step once, whichever worker fired and ran it
        wait_until(
            lambda: (
                db.value(
                    "SELECT count(*) FROM durable.runs WHERE workflow = 'beat' "
                    "AND status <> 'completed' AND created_at < now() - interval '2 s'"
                )
                == 0
            ),
            timeout=30,
            what="every run to complete",
            diagnose=fleet.tails,
        )
        dup = db.value(
            "SELECT count(*) FROM (SELECT run_id FROM public.ticks GROUP BY run_id "
            "HAVING count(*) > 1) d"
        )
        assert dup == 0
    finally:
        db.close()


def test_a_schedule_keeps_firing_across_a_sigkill_and_a_postgres_restart(
    own_server: Path, make_fleet: Callable[..., WorkerFleet]
) -> None:
    dsn = embedded_start(own_server)
    schedule_app.build(dsn).close()  # migrate before the workers start
    create_table(dsn, schedule_app.TICKS_TABLE)
    db = Db(dsn)
    fleet: WorkerFleet = make_fleet(dsn, app="schedule_app:app", concurrency=4)
    try:
        fleet.start(2)
        first = wait_until(
            lambda: db.value("SELECT min(tick) FROM public.ticks"),
            timeout=60,
            what="the first tick",
            diagnose=fleet.tails,
        )
        time.sleep(2)
        fleet.kill(fleet.alive()[0])
        time.sleep(2)
        db.close()
        _stop_server(own_server, "fast")
        time.sleep(3)  # ticks missed while the database is down
        embedded_start(own_server)
        wait_until(lambda: _server_up(dsn), timeout=60, what="the server to come back")
        fleet.start(1)
        restarted = datetime.now(first.tzinfo)
        wait_until(
            lambda: (
                (db.value("SELECT max(tick) FROM public.ticks") or first)
                > restarted + timedelta(seconds=3)
            ),
            timeout=90,
            what="ticks after the restart",
            diagnose=fleet.tails,
        )
        last = db.value("SELECT max(tick) FROM public.ticks")
        ticks = _every_tick_once(db, first, last - timedelta(seconds=2))
        assert len(ticks) >= 10
    finally:
        db.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT 1")
