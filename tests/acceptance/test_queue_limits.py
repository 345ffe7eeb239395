"""Queue limits hold under load and crashes: 3 worker processes, runs across 20 keys on
one queue with global, per-key and rate limits, steps of random length, workers
SIGKILLed; and an unthrottled queue's runs are not held up by the throttled one.

``QUEUE_STRESS_RUNS`` (default 80) and ``QUEUE_STRESS_KILLS`` (default 1) size it; the
full form is 200 runs and 2 kills (``QUEUE_STRESS_RUNS=200 QUEUE_STRESS_KILLS=2``).
"""

from __future__ import annotations

import os
import random
import time
from datetime import datetime, timedelta
from typing import Any

import queue_app
from acceptance_helpers import Db, create_table, wait_until

RUNS = int(os.environ.get("QUEUE_STRESS_RUNS", "80"))
KILLS = int(os.environ.get("QUEUE_STRESS_KILLS", "1"))
KEYS = 20
FREE_RUNS = 20


def _max_overlap(spans: list[tuple[datetime, datetime]]) -> int:
    events = [(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans]
    best = now = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start
        now += delta
        best = max(best, now)
    return best


def test_queue_limits_hold_across_workers_and_crashes(dsn: str, make_fleet: Any) -> None:
    create_table(dsn, queue_app.SPANS_TABLE)
    app = queue_app.build(dsn)
    db = Db(dsn)
    fleet = make_fleet(dsn, app="queue_app:app", concurrency=8)
    rng = random.Random(7)
    try:
        throttled = [
            app.start("throttled", f"t{i}", f"key-{i % KEYS}", rng.uniform(0.02, 0.25))
            for i in range(RUNS)
        ]
        fleet.start(3)
        kill_times: dict[int, datetime] = {}
        for k in range(KILLS):
            # kill a worker while it is inside a step of the throttled queue
            victim_pid = wait_until(
                lambda: db.value(
                    "SELECT pid FROM public.queue_spans WHERE finished_at IS NULL "
                    "AND queue = 'throttled' AND pid = ANY(%s) LIMIT 1",
                    ([w.pid for w in fleet.alive()],),
                ),
                timeout=60,
                what=f"a step in flight for kill {k + 1}",
                diagnose=fleet.tails,
            )
            victim = next(w for w in fleet.alive() if w.pid == victim_pid)
            fleet.kill(victim)
            kill_times[victim_pid] = db.value("SELECT clock_timestamp()")
            fleet.start(1)
            if k == 0:
                free_started = time.monotonic()
                free = [app.start("free", f"f{i}") for i in range(FREE_RUNS)]
                free_results = [r.result(timeout=120) for r in free]
                free_took = time.monotonic() - free_started
                throttled_pending = db.value(
                    "SELECT count(*) FROM durable.runs WHERE queue = 'throttled' "
                    "AND status NOT IN ('completed')"
                )
        for r in throttled:
            r.result(timeout=300)
        fleet.check_alive()
        assert len(free_results) == FREE_RUNS
        # the free queue's runs went through while the throttled one still had a backlog
        assert throttled_pending > 0
        assert free_took < 15, f"the unthrottled runs took {free_took:.1f}s"

        rows = db.rows(
            "SELECT run_key, key, pid, started_at, finished_at FROM public.queue_spans "
            "WHERE queue = 'throttled'"
        )
        spans = []
        by_key: dict[str, list[tuple[datetime, datetime]]] = {}
        for row in rows:
            end = row["finished_at"] or kill_times[row["pid"]]
            spans.append((row["started_at"], end))
            by_key.setdefault(row["key"], []).append((row["started_at"], end))
        assert {r["run_key"] for r in rows} == {f"t{i}" for i in range(RUNS)}
        overlap = _max_overlap(spans)
        assert overlap <= queue_app.CONCURRENCY, f"{overlap} throttled steps at once"
        worst_key = max(_max_overlap(v) for v in by_key.values())
        assert worst_key <= queue_app.KEY_CONCURRENCY, f"{worst_key} steps of one key at once"
        # the rate limit counts starts: the time a worker admitted each run
        starts = sorted(
            r["started_at"]
            for r in db.rows("SELECT started_at FROM durable.runs WHERE queue = 'throttled'")
        )
        window = timedelta(seconds=queue_app.RATE.per)
        j = 0
        for i in range(len(starts)):
            while starts[i] - starts[j] >= window:
                j += 1
            assert i - j + 1 <= queue_app.RATE.limit, (
                f"{i - j + 1} starts in {window} from {starts[j]}"
            )
    finally:
        db.close()
        app.close()
