"""Helpers of the acceptance tests: worker subprocesses, polling, and log inspection.

Workers are real ``python -m durable worker crash_app:app`` processes with short leases,
so a SIGKILLed worker's runs are resumed about ``lease_seconds`` later. Everything the
tests wait for is polled from the database with a deadline; a timeout fails with the
state of the runs and the tails of the worker logs.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row

HERE = Path(__file__).resolve().parent
APP = "crash_app:app"
LEASE_SECONDS = 1.5
POLL_INTERVAL = 0.1

T = TypeVar("T")


# -- worker subprocesses -------------------------------------------------------------------


@dataclass(eq=False)
class WorkerProcess:
    """One ``durable worker`` subprocess and the file its output goes to."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    started_at: float
    killed_at: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def owner_pattern(self) -> str:
        """A LIKE pattern matching the ``lease_owner`` of runs this worker holds
        (the default worker id is ``host:pid:suffix``)."""
        return f"%:{self.pid}:%"

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass(eq=False)
class WorkerFleet:
    """Starts, kills (SIGKILL) and replaces worker subprocesses; kill them all at the end."""

    dsn: str
    log_dir: Path
    concurrency: int = 4
    lease_seconds: float = LEASE_SECONDS
    poll_interval: float = POLL_INTERVAL
    app: str = APP
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
        env["DURABLE_DSN"] = self.dsn
        env["DURABLE_HOME"] = str(self.log_dir / "durable-home")  # never ./.durable
        env["PYTHONPATH"] = str(HERE)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    def start(self, count: int = 1) -> list[WorkerProcess]:
        started = []
        for _ in range(count):
            log_path = self.log_dir / f"worker-{len(self.workers) + 1}.log"
            with log_path.open("wb") as out:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "durable",
                        "worker",
                        self.app,
                        "--concurrency",
                        str(self.concurrency),
                        "--lease-seconds",
                        str(self.lease_seconds),
                        "--poll-interval",
                        str(self.poll_interval),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.env(),
                    cwd=self.log_dir,
                )
            worker = WorkerProcess(proc, log_path, time.monotonic())
            self.workers.append(worker)
            started.append(worker)
        return started

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive()]

    def kill(self, worker: WorkerProcess) -> float:
        """SIGKILL ``worker``, reap it, and return the monotonic time of the kill."""
        worker.killed_at = time.monotonic()
        os.kill(worker.pid, signal.SIGKILL)
        worker.proc.wait(timeout=30)
        return worker.killed_at

    def check_alive(self) -> None:
        """Fail if a worker this test did not kill has exited."""
        for w in self.workers:
            if w.killed_at is None and not w.alive():
                raise AssertionError(
                    f"worker {w.pid} exited with status {w.proc.returncode}:\n{w.tail()}"
                )

    def stop_all(self) -> None:
        """SIGKILL every worker still running (the finally block of every test)."""
        for w in self.workers:
            if w.alive():
                w.proc.kill()
        for w in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(timeout=30)

    def tails(self, lines: int = 25) -> str:
        parts = []
        for w in self.workers:
            state = (
                "killed by the test"
                if w.killed_at is not None
                else ("running" if w.alive() else f"exited {w.proc.returncode}")
            )
            parts.append(f"--- worker pid {w.pid} ({state}), {w.log_path}:\n{w.tail(lines)}")
        return "\n".join(parts)

    def log_text(self) -> str:
        return "\n".join(w.log_path.read_text(errors="replace") for w in self.workers)


# -- the database --------------------------------------------------------------------------


class Db:
    """A small autocommit connection for inspecting tables; reconnects when it breaks."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    def rows(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        for attempt in (1, 2):
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self.dsn, autocommit=True, row_factory=dict_row, connect_timeout=5
                )
            try:
                cur = self._conn.execute(query, params)  # type: ignore[arg-type]
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def value(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        found = self.rows(query, params)
        return next(iter(found[0].values())) if found else None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- what the tests ask ----------------------------------------------------------------

    def statuses(self) -> dict[str, int]:
        found = self.rows("SELECT status, count(*) AS n FROM durable.runs GROUP BY status")
        return {r["status"]: r["n"] for r in found}

    def fail_on_bad_runs(self, expected: Iterable[str] = ()) -> bool:
        """Raise AssertionError if a run ended failed, cancelled, timed out or blocked
        (except the runs of ``expected``); else True (for use inside polled conditions)."""
        bad = self.rows(
            "SELECT run_id, status, error FROM durable.runs "
            "WHERE status IN ('failed', 'cancelled', 'timed_out', 'blocked') "
            "AND NOT run_id = ANY(%s) ORDER BY run_id LIMIT 5",
            (list(expected),),
        )
        if bad:
            raise AssertionError(f"runs ended badly: {bad}")
        return True

    def count_events(self, type_: str, run_ids: Iterable[str] | None = None) -> int:
        if run_ids is None:
            return int(self.value("SELECT count(*) FROM durable.events WHERE type = %s", (type_,)))
        return int(
            self.value(
                "SELECT count(*) FROM durable.events WHERE type = %s AND run_id = ANY(%s)",
                (type_, list(run_ids)),
            )
        )

    def duplicated_positions(self) -> list[dict[str, Any]]:
        """(run, pos, type) recorded more than once, for the events that resolve a
        position exactly once."""
        return self.rows(
            """
            SELECT run_id, type, (data->>'pos')::int AS pos, count(*) AS n
            FROM durable.events
            WHERE type IN ('step_completed', 'step_failed', 'timer_started', 'timer_fired',
                           'signal_received', 'wait_timed_out')
            GROUP BY run_id, type, (data->>'pos')::int
            HAVING count(*) > 1
            ORDER BY run_id, pos
            """
        )

    def step_completions(self, run_ids: Iterable[str]) -> list[dict[str, Any]]:
        return self.rows(
            """
            SELECT run_id, seq, (data->>'pos')::int AS pos, data->>'name' AS name,
                   data->'result' AS result
            FROM durable.events
            WHERE type = 'step_completed' AND run_id = ANY(%s)
            ORDER BY run_id, seq
            """,
            (list(run_ids),),
        )

    def held_by(self, worker: WorkerProcess) -> dict[str, int]:
        """Runs whose lease ``worker`` holds now: run_id -> last_seq."""
        found = self.rows(
            "SELECT run_id, last_seq FROM durable.runs "
            "WHERE lease_owner LIKE %s AND status IN ('pending', 'running', 'waiting')",
            (worker.owner_pattern(),),
        )
        return {r["run_id"]: r["last_seq"] for r in found}

    def stalled(self, snapshot: dict[str, int]) -> list[str]:
        """The runs of ``snapshot`` (run_id -> last_seq) that have not moved since."""
        if not snapshot:
            return []
        found = self.rows(
            "SELECT run_id, last_seq, status FROM durable.runs WHERE run_id = ANY(%s)",
            (list(snapshot),),
        )
        return [
            r["run_id"]
            for r in found
            if r["last_seq"] <= snapshot[r["run_id"]]
            and r["status"] not in ("completed", "failed", "cancelled", "timed_out")
        ]


def create_table(dsn: str, ddl: str) -> None:
    """Run ``ddl`` (a CREATE TABLE of the tests' own, outside pgdurable's schema)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(ddl)  # type: ignore[arg-type]


# -- waiting -------------------------------------------------------------------------------


def wait_until(
    check: Callable[[], T],
    *,
    timeout: float,
    what: str,
    diagnose: Callable[[], str] = lambda: "",
    interval: float = 0.05,
) -> T:
    """Poll ``check`` until it returns something truthy; return it. On timeout fail with
    ``what`` and the diagnostics."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{diagnose()}")
        time.sleep(interval)


# -- executions ----------------------------------------------------------------------------


@dataclass
class ExecutionReport:
    """What :func:`check_executions` found."""

    steps: int = 0
    executions: int = 0
    reexecuted_steps: int = 0
    unfinished_at_kill: int = 0
    finished_not_recorded: int = 0
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.steps} steps, {self.executions} executions, {self.reexecuted_steps} steps "
            f"executed more than once ({self.unfinished_at_kill} earlier executions were in "
            f"flight when their worker was killed, {self.finished_not_recorded} had finished "
            "but their worker was killed before the result was recorded)"
        )


def check_executions(
    executions: list[dict[str, Any]],
    recorded: dict[tuple[str, str], list[int]],
    expected: dict[str, list[str]],
    killed: Collection[int],
) -> ExecutionReport:
    """Check at-least-once execution against exactly-once recording, step by step.

    ``executions``: rows of ``step_executions``; ``recorded``: (run, step key) -> the
    execution ids the log's ``step_completed`` events carry; ``expected``: run -> the step
    keys it must have recorded; ``killed``: the pids the test SIGKILLed.

    For every expected step: its result is recorded exactly once; it was executed at least
    once; the recorded result comes from its *last* execution, which finished; and every
    earlier execution ran in a worker the test killed. So a step whose result was in the
    log is never executed again, and a step re-runs only when the worker running it died
    before recording its result (an execution's start or end may be stamped a little after
    the kill: the server can still run a statement the worker sent just before it died).
    """
    report = ExecutionReport()
    by_step: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for row in executions:
        by_step[(row["run_key"], row["step_key"])].append(row)
    wanted = {(run, step) for run, steps in expected.items() for step in steps}
    for key in sorted(set(by_step) - wanted):
        report.violations.append(f"{key}: executed but never expected")
    for key in sorted(set(recorded) - wanted):
        report.violations.append(f"{key}: recorded but never expected")
    for key in sorted(wanted):
        report.steps += 1
        runs = sorted(by_step.get(key, []), key=lambda r: r["id"])
        report.executions += len(runs)
        ids = recorded.get(key, [])
        if len(ids) != 1:
            report.violations.append(f"{key}: recorded {len(ids)} times (execution ids {ids})")
            continue
        if not runs:
            report.violations.append(f"{key}: recorded but never executed")
            continue
        last = runs[-1]
        if ids[0] != last["id"]:
            report.violations.append(
                f"{key}: the log recorded execution {ids[0]} but the last execution is "
                f"{last['id']} (pid {last['pid']}): a recorded step ran again"
            )
        if last["finished_at"] is None:
            report.violations.append(f"{key}: the recorded execution {last['id']} never finished")
        if len(runs) > 1:
            report.reexecuted_steps += 1
        for earlier in runs[:-1]:
            pid = earlier["pid"]
            if pid not in killed:
                report.violations.append(
                    f"{key}: executed {len(runs)} times; execution {earlier['id']} ran in "
                    f"pid {pid}, which was never killed, yet the step ran again"
                )
            elif earlier["finished_at"] is None:
                report.unfinished_at_kill += 1
            else:
                report.finished_not_recorded += 1
    return report


def recorded_executions(db: Db, run_ids: Iterable[str]) -> dict[tuple[str, str], list[int]]:
    """(run, step key) -> execution ids of the recorded steps' results (``exec``), located
    through the ``step_executions`` row each result names."""
    completions = db.step_completions(run_ids)
    ids = [int(c["result"]["exec"]) for c in completions if isinstance(c["result"], dict)]
    rows = db.rows(
        "SELECT id, run_key, step_key FROM public.step_executions WHERE id = ANY(%s)", (ids,)
    )
    keys = {r["id"]: (r["run_key"], r["step_key"]) for r in rows}
    out: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
    for c in completions:
        result = c["result"]
        if not isinstance(result, dict) or "exec" not in result:
            continue
        exec_id = int(result["exec"])
        run_key, step_key = keys.get(exec_id, (c["run_id"], f"<unknown execution {exec_id}>"))
        if run_key != c["run_id"]:
            step_key = f"<execution {exec_id} of run {run_key}>"
        out[(c["run_id"], step_key)].append(exec_id)
    return dict(out)
