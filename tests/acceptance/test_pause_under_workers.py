"""Pausing a run while a worker holds its lease: the run stops at its next yield.

API.md: "``app.pause(run_id)``: the run stops at its next yield; steps already running
finish and are recorded; timers, signals and events that arrive meanwhile are recorded
and delivered after ``app.resume(run_id)``." The test pauses a ``gated`` run while its
first step runs in a worker subprocess (the step waits for a gate the test opens), sends
the two signals the run waits for next, opens the gate, and checks that the run stays
paused with both signals still in its inbox until it is resumed.
"""

from __future__ import annotations

from collections.abc import Callable

import crash_app
from acceptance_helpers import Db, WorkerFleet, create_table, wait_until

RUN = "gated-1"


def test_a_run_paused_while_its_step_runs_consumes_no_signal_until_resumed(
    dsn: str, make_fleet: Callable[..., WorkerFleet]
) -> None:
    create_table(dsn, crash_app.EXECUTIONS_TABLE)
    create_table(dsn, crash_app.GATES_TABLE)
    app = crash_app.build(dsn)
    db = Db(dsn)
    fleet: WorkerFleet = make_fleet(dsn, concurrency=2)

    def diagnose() -> str:
        history = db.rows(
            "SELECT seq, type, data FROM durable.events WHERE run_id = %s ORDER BY seq", (RUN,)
        )
        return f"status {app.handle(RUN).status()}; history {history}\n{fleet.tails()}"

    try:
        fleet.start(1)
        app.start("gated", RUN, 2, run_id=RUN)
        wait_until(
            lambda: db.value(
                "SELECT count(*) FROM public.step_executions WHERE run_key = %s", [RUN]
            ),
            timeout=30,
            what="the gate step to run",
            diagnose=diagnose,
        )
        app.pause(RUN)  # the worker holds the lease: the pause goes through its inbox
        app.signal(RUN, "n", 1)
        app.signal(RUN, "n", 2)
        db.rows("INSERT INTO public.gates (run_key) VALUES (%s)", (RUN,))
        # The step's result is recorded ("steps already running finish and are recorded")
        # and the worker lets the run go.
        wait_until(
            lambda: (
                db.count_events("step_completed", [RUN]) == 1
                and app.handle(RUN).status() != "running"
            ),
            timeout=30,
            what="the gate step's result and the run's release",
            diagnose=diagnose,
        )
        assert app.handle(RUN).status() == "paused", diagnose()
        assert db.count_events("signal_received", [RUN]) == 0, diagnose()
        assert db.value("SELECT count(*) FROM durable.signals WHERE run_id = %s", (RUN,)) == 2

        app.resume(RUN)
        assert app.handle(RUN).result(timeout=30) == [1, 2]
        assert db.value("SELECT count(*) FROM durable.signals WHERE run_id = %s", (RUN,)) == 0
        fleet.check_alive()
    finally:
        fleet.stop_all()
        db.close()
        app.close()
