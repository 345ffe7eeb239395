"""Workers SIGKILLed in the middle of many runs: nothing is lost, nothing recorded twice.

Three ``durable worker`` subprocesses run 200 ``pipeline`` runs of seven recorded steps
(three of them in a ``ctx.all``) and a short durable sleep. Every step execution writes a
row of its own (pid, start, finish) outside pgdurable's schema. While the runs progress,
the test SIGKILLs a worker that has steps in flight, five times, starting a replacement
each time, and at the end checks, step by step, at-least-once execution against
exactly-once recording (see ``acceptance_helpers.check_executions``).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any

import crash_app
from acceptance_helpers import (
    Db,
    WorkerFleet,
    WorkerProcess,
    check_executions,
    create_table,
    recorded_executions,
)

RUNS = 200
WORKERS = 3
CONCURRENCY = 4
KILL_AT = (0.10, 0.22, 0.34, 0.46, 0.58)
"""Kill a worker when this fraction of all step results is recorded."""
DEADLINE = 120.0


def _in_flight(db: Db, fleet: WorkerFleet) -> dict[int, int]:
    """pid -> executions started and not finished, for the live workers."""
    alive = [w.pid for w in fleet.alive()]
    rows = db.rows(
        "SELECT pid, count(*) AS n FROM public.step_executions "
        "WHERE finished_at IS NULL AND pid = ANY(%s) GROUP BY pid",
        (alive,),
    )
    return {r["pid"]: r["n"] for r in rows}


def test_sigkilled_workers_lose_no_run_and_rerun_only_steps_in_flight(
    dsn: str, make_fleet: Callable[..., WorkerFleet]
) -> None:
    create_table(dsn, crash_app.EXECUTIONS_TABLE)
    app = crash_app.build(dsn)
    db = Db(dsn)
    fleet: WorkerFleet = make_fleet(dsn, concurrency=CONCURRENCY)
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    run_ids = [f"pipe-{i:03d}" for i in range(RUNS)]
    args = {rid: i * 7919 + 13 for i, rid in enumerate(run_ids)}
    total_steps = RUNS * len(crash_app.PIPELINE_STEPS)
    kills: list[dict[str, Any]] = []
    recoveries: list[dict[str, Any]] = []  # pending: snapshot of the victim's runs

    def diagnose() -> str:
        return (
            f"seed {seed}; statuses {db.statuses()}; "
            f"step results {db.count_events('step_completed')}/{total_steps}; "
            f"kills {[(k['pid'], k['at_fraction']) for k in kills]}\n{fleet.tails()}"
        )

    try:
        fleet.start(WORKERS)
        began = time.monotonic()
        for rid in run_ids:
            app.start("pipeline", rid, args[rid], run_id=rid)
        kill_plan = list(KILL_AT)
        while True:
            now = time.monotonic()
            if now - began > DEADLINE:
                raise AssertionError(f"runs not done after {DEADLINE:g}s\n{diagnose()}")
            fleet.check_alive()
            db.fail_on_bad_runs()
            for pending in [r for r in recoveries if r["recovered_in"] is None]:
                if not db.stalled(pending["held"]):
                    pending["recovered_in"] = now - pending["killed_at"]
            done = db.count_events("step_completed")
            if kill_plan and done >= kill_plan[0] * total_steps:
                busy = _in_flight(db, fleet)
                if busy:  # else: poll again until some live worker runs a step
                    chosen = rng.choice(sorted(busy))
                    victim: WorkerProcess = next(w for w in fleet.alive() if w.pid == chosen)
                    held = db.held_by(victim)
                    killed_at = fleet.kill(victim)
                    fleet.start(1)
                    kills.append(
                        {
                            "pid": victim.pid,
                            "at_fraction": round(done / total_steps, 2),
                            "in_flight": busy[victim.pid],
                            "held_runs": len(held),
                        }
                    )
                    recoveries.append({"held": held, "killed_at": killed_at, "recovered_in": None})
                    kill_plan.pop(0)
            if not kill_plan:
                unfinished = db.value(
                    "SELECT count(*) FROM durable.runs WHERE status <> 'completed'"
                )
                if unfinished == 0 and all(r["recovered_in"] is not None for r in recoveries):
                    break
            time.sleep(0.05)
        elapsed = time.monotonic() - began
        fleet.check_alive()
        logs = fleet.log_text()
    finally:
        fleet.stop_all()

    try:
        # Every run completed with the right result.
        rows = db.rows(
            "SELECT run_id, status, (SELECT data->'result' FROM durable.events e "
            " WHERE e.run_id = r.run_id AND e.type = 'run_completed') AS result "
            "FROM durable.runs r ORDER BY run_id"
        )
        assert [r["run_id"] for r in rows] == run_ids
        wrong = [
            (r["run_id"], r["status"], r["result"])
            for r in rows
            if r["status"] != "completed"
            or r["result"]["value"] != crash_app.expected_pipeline_value(args[r["run_id"]])
        ]
        assert not wrong, f"runs with a wrong status or result: {wrong[:10]}"

        # The log: each position resolved exactly once, no failure anywhere.
        assert db.duplicated_positions() == []
        assert db.count_events("step_completed") == total_steps
        assert db.count_events("timer_fired") == RUNS
        for bad in ("step_attempt_failed", "step_failed", "run_failed", "run_blocked"):
            assert db.count_events(bad) == 0, f"{bad} events in the log"

        # Execution versus recording, step by step.
        executions = db.rows("SELECT * FROM public.step_executions ORDER BY id")
        recorded = recorded_executions(db, run_ids)
        report = check_executions(
            executions,
            recorded,
            {rid: list(crash_app.PIPELINE_STEPS) for rid in run_ids},
            {k["pid"] for k in kills},
        )
        assert not report.violations, "\n".join(report.violations[:20])
        # The result each run returned names the recorded executions.
        for r in rows:
            for step, exec_id in r["result"]["execs"].items():
                assert recorded[(r["run_id"], step)] == [exec_id], (r["run_id"], step)

        assert len(kills) == len(KILL_AT)
        assert all(k["in_flight"] > 0 for k in kills)
        # Some step must really have been cut off, or the test proved nothing.
        assert report.unfinished_at_kill > 0, report.summary()
        print(
            f"\n[worker crashes] seed {seed}: {RUNS} runs in {elapsed:.1f}s, "
            f"{len(kills)} SIGKILLs "
            f"(in flight / held runs: {[(k['in_flight'], k['held_runs']) for k in kills]}), "
            f"recovery times {[round(r['recovered_in'], 2) for r in recoveries]}s; "
            f"{report.summary()}; lease losses logged by surviving workers: "
            f"{logs.count('lease lost')}"
        )
    finally:
        db.close()
        app.close()
