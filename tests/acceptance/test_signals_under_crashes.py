"""Signals, timers, pause/resume and cancellation while workers are SIGKILLed.

Fifty ``collector`` runs wait for signals named ``n`` (half of the waits with a timeout, so
they also start a timer), with short durable sleeps and recorded steps in between:

- 40 runs receive 8 signals each and complete;
- 5 runs are paused once they have consumed a signal, stay paused while their other
  signals arrive, are resumed and complete;
- 5 runs receive 2 signals, are cancelled while they wait for more, run a recorded
  compensation step in ``except durable.Cancelled`` and end ``cancelled``.

Four threads of the test process send the signals concurrently (each payload unique, and
each thread's signals to a run in order), while three worker subprocesses run the
workflows and the test SIGKILLs one of them four times, starting a replacement each time.
At the end every signal was consumed exactly once (no loss, no duplicate, FIFO per
sender), every run is in the status it should be in, and every recorded step, the
compensations included, was recorded once and re-executed only after a kill.
"""

from __future__ import annotations

import collections
import os
import random
import threading
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
    wait_until,
)

SIGNALS = 8
CANCEL_SIGNALS = 2  # fewer than the 3 that lead to the first recorded step
NORMAL = [f"sig-{i:02d}" for i in range(40)]
PAUSED = [f"pau-{i:02d}" for i in range(5)]
CANCELLED = [f"cxl-{i:02d}" for i in range(5)]
SENDERS = 4
WORKERS = 3
KILL_AT = (0.2, 0.45, 0.7)
"""Kill a worker when this fraction of the normal runs' signals is consumed (and once
more right after the paused runs are resumed)."""
SEND_PAUSE = (0.02, 0.06)
"""Each sender waits this long (uniform, seconds) between two signals, so the signals
keep arriving for a few seconds, through the kills."""
DEADLINE = 120.0

Payload = tuple[str, int, int]  # (run, sender, index)


def _plan(rng: random.Random) -> list[list[Payload]]:
    """What each sender thread sends, in order: every signal of a run goes through a
    random sender, signal ``j`` of every run before signal ``j + 1`` of any. The cancelled
    runs' signals go first (a run must not be cancelled before its signals are sent, or the
    send would fail with RunNotActive)."""
    plans: list[list[Payload]] = [[] for _ in range(SENDERS)]
    for group, count in ((CANCELLED, CANCEL_SIGNALS), (NORMAL + PAUSED, SIGNALS)):
        for j in range(count):
            for run in group:
                sender = rng.randrange(SENDERS)
                plans[sender].append((run, sender, j))
    return plans


def _as_payload(item: Any) -> Payload:
    return (item["run"], item["sender"], item["i"])


def _received(db: Db, run_ids: list[str]) -> dict[str, list[Payload]]:
    """run -> payloads of its ``signal_received`` events, in log order."""
    out: dict[str, list[Payload]] = {rid: [] for rid in run_ids}
    for row in db.rows(
        "SELECT run_id, data->'payload' AS payload FROM durable.events "
        "WHERE type = 'signal_received' AND run_id = ANY(%s) ORDER BY run_id, seq",
        (run_ids,),
    ):
        out[row["run_id"]].append(_as_payload(row["payload"]))
    return out


def _received_counts(db: Db, run_ids: list[str]) -> dict[str, int]:
    rows = db.rows(
        "SELECT run_id, count(*) AS n FROM durable.events "
        "WHERE type = 'signal_received' AND run_id = ANY(%s) GROUP BY run_id",
        (run_ids,),
    )
    found = {r["run_id"]: r["n"] for r in rows}
    return {rid: found.get(rid, 0) for rid in run_ids}


def _statuses(db: Db, run_ids: list[str]) -> set[str]:
    rows = db.rows("SELECT DISTINCT status FROM durable.runs WHERE run_id = ANY(%s)", (run_ids,))
    return {r["status"] for r in rows}


def _inbox(db: Db, run_ids: list[str]) -> dict[str, list[Payload]]:
    out: dict[str, list[Payload]] = {rid: [] for rid in run_ids}
    for row in db.rows(
        "SELECT run_id, payload FROM durable.signals WHERE run_id = ANY(%s) ORDER BY run_id, id",
        (run_ids,),
    ):
        out[row["run_id"]].append(_as_payload(row["payload"]))
    return out


def test_signals_are_consumed_exactly_once_and_runs_end_right_while_workers_crash(
    dsn: str, make_fleet: Callable[..., WorkerFleet]
) -> None:
    create_table(dsn, crash_app.EXECUTIONS_TABLE)
    app = crash_app.build(dsn)
    db = Db(dsn)
    fleet: WorkerFleet = make_fleet(dsn, concurrency=4)
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    plans = _plan(rng)
    sent: dict[str, list[Payload]] = collections.defaultdict(list)
    for plan in plans:
        for payload in plan:
            sent[payload[0]].append(payload)
    every_run = NORMAL + PAUSED + CANCELLED
    cancel_signals_sent: list[Payload] = []  # appended to by the senders
    sender_errors: list[BaseException] = []
    kills: list[dict[str, Any]] = []

    def send(plan: list[Payload], sender_seed: int) -> None:
        pace = random.Random(sender_seed)
        try:
            for run, sender, index in plan:
                app.signal(run, "n", {"run": run, "sender": sender, "i": index})
                if run in CANCELLED:
                    cancel_signals_sent.append((run, sender, index))
                time.sleep(pace.uniform(*SEND_PAUSE))
        except BaseException as exc:
            sender_errors.append(exc)
            raise

    def diagnose() -> str:
        return (
            f"seed {seed}; statuses {db.statuses()}; signals consumed "
            f"{db.count_events('signal_received')}/{sum(map(len, sent.values()))}; "
            f"kills {kills}; sender errors {sender_errors!r}\n{fleet.tails()}"
        )

    def kill_one(reason: str) -> None:
        """SIGKILL a live worker, preferably one holding leases (polled for up to a
        second), and start a replacement."""
        deadline = time.monotonic() + 1.0
        while not (holding := [w for w in fleet.alive() if db.held_by(w)]):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        victim: WorkerProcess = rng.choice(holding or fleet.alive())
        held = len(db.held_by(victim))
        fleet.kill(victim)
        fleet.start(1)
        kills.append({"pid": victim.pid, "why": reason, "held_runs": held})

    senders = [
        threading.Thread(target=send, args=(plan, rng.randrange(2**32)), name=f"sender-{i}")
        for i, plan in enumerate(plans)
    ]
    try:
        fleet.start(WORKERS)
        began = time.monotonic()
        for rid in NORMAL + PAUSED:
            app.start("collector", rid, SIGNALS, run_id=rid)
        for rid in CANCELLED:
            app.start("collector", rid, SIGNALS, run_id=rid)
        for t in senders:
            t.start()

        kill_plan = list(KILL_AT)
        normal_total = len(NORMAL) * SIGNALS
        paused = cancelled = False
        while kill_plan or not paused or not cancelled or any(t.is_alive() for t in senders):
            if time.monotonic() - began > DEADLINE:
                raise AssertionError(f"not done after {DEADLINE:g}s\n{diagnose()}")
            fleet.check_alive()
            db.fail_on_bad_runs(expected=CANCELLED)
            assert not sender_errors, diagnose()
            if kill_plan:
                consumed = sum(_received_counts(db, NORMAL).values())
                if consumed >= kill_plan[0] * normal_total:
                    kill_one(f"{consumed}/{normal_total} signals consumed")
                    kill_plan.pop(0)
            if not paused and all(_received_counts(db, PAUSED).values()):
                for rid in PAUSED:
                    app.pause(rid)
                paused = True
            if (
                not cancelled
                and len(cancel_signals_sent) == len(CANCELLED) * CANCEL_SIGNALS
                and all(_received_counts(db, CANCELLED).values())
            ):
                for rid in CANCELLED:
                    app.cancel(rid, "acceptance test")
                cancelled = True
            time.sleep(0.05)
        for t in senders:
            t.join(timeout=30)
        assert not sender_errors, diagnose()

        # The paused runs stay paused, their remaining signals in the inbox, until resumed.
        wait_until(
            lambda: _statuses(db, PAUSED) == {"paused"},
            timeout=30,
            what="the paused runs to be paused",
            diagnose=diagnose,
        )
        while_paused = _received_counts(db, PAUSED)
        assert all(n < SIGNALS for n in while_paused.values()), while_paused
        for rid in PAUSED:
            app.resume(rid)
        kill_one("right after the resumes")

        wait_until(
            lambda: (
                db.fail_on_bad_runs(expected=CANCELLED)
                and _statuses(db, every_run) <= {"completed", "cancelled"}
            ),
            timeout=max(DEADLINE - (time.monotonic() - began), 30),
            what="every run to end",
            diagnose=diagnose,
        )
        elapsed = time.monotonic() - began
        fleet.check_alive()
    finally:
        fleet.stop_all()
        for t in senders:
            t.join(timeout=30)

    try:
        statuses = {
            r["run_id"]: r["status"] for r in db.rows("SELECT run_id, status FROM durable.runs")
        }
        expected_status = {rid: "completed" for rid in NORMAL + PAUSED}
        expected_status.update({rid: "cancelled" for rid in CANCELLED})
        assert statuses == expected_status
        assert db.duplicated_positions() == []

        received = _received(db, every_run)
        inbox = _inbox(db, every_run)
        results = {
            r["run_id"]: [_as_payload(p) for p in r["result"]]
            for r in db.rows(
                "SELECT run_id, data->'result' AS result FROM durable.events "
                "WHERE type = 'run_completed'"
            )
        }
        for rid in NORMAL + PAUSED:
            # Each signal consumed exactly once, in each sender's order; the inbox is empty.
            assert results[rid] == received[rid], rid
            assert sorted(received[rid]) == sorted(sent[rid]), rid
            assert inbox[rid] == [], rid
            for sender in range(SENDERS):
                order = [i for (_, s, i) in received[rid] if s == sender]
                assert order == sorted(order), (rid, sender, received[rid])
        for rid in CANCELLED:
            # What the run consumed plus what is left in its inbox is exactly what was sent.
            assert sorted(received[rid] + inbox[rid]) == sorted(sent[rid]), rid
            assert db.count_events("cancel_requested", [rid]) >= 1
            assert db.count_events("run_cancelled", [rid]) == 1

        # The paused runs were paused and resumed once. (That a run paused while a worker
        # holds its lease consumes no signal until resumed is test_pause_under_workers.py.)
        for rid in PAUSED:
            assert db.count_events("run_paused", [rid]) == 1, rid
            assert db.count_events("run_resumed", [rid]) == 1, rid

        # Recorded steps (compensations included): once in the log, re-run only after a kill.
        recorded = recorded_executions(db, every_run)
        expected_steps = {rid: crash_app.collector_step_keys(SIGNALS) for rid in NORMAL + PAUSED}
        expected_steps.update({rid: ["compensate"] for rid in CANCELLED})
        executions = db.rows("SELECT * FROM public.step_executions ORDER BY id")
        report = check_executions(executions, recorded, expected_steps, {k["pid"] for k in kills})
        assert not report.violations, "\n".join(report.violations[:20])
        for row in db.step_completions(CANCELLED):
            if row["name"] == "compensate":
                assert row["result"]["undone"] == len(received[row["run_id"]]), row
        assert len(kills) == len(KILL_AT) + 1
        print(
            f"\n[signals under crashes] seed {seed}: {len(every_run)} runs, "
            f"{sum(map(len, sent.values()))} signals from {SENDERS} threads in {elapsed:.1f}s; "
            f"{len(kills)} SIGKILLs (held runs {[k['held_runs'] for k in kills]}); "
            f"signals left unconsumed in cancelled runs' inboxes: "
            f"{sum(len(inbox[r]) for r in CANCELLED)}; paused runs had consumed "
            f"{sorted(while_paused.values())} of {SIGNALS}; {report.summary()}"
        )
    finally:
        db.close()
        app.close()
