"""The client's units of work: creating runs, signals, latched events, controls, retry,
and reading runs back. Each public method is one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..replay.vocabulary import TERMINAL_STATUSES, EventType, RunStatus
from ._db import Conn, Database
from ._errors import ConflictError, RunNotActive, RunNotFound, RunStateError
from ._family import Family
from ._records import (
    NewEvent,
    NewRun,
    PruneCounts,
    RunRow,
    StatRow,
    StoredEvent,
    WorkerRow,
    events_json,
    jsonb_text,
)

__all__ = ["Created", "RunStore"]


@dataclass(frozen=True, slots=True)
class Created:
    """The outcome of :meth:`RunStore.create_run`: the run's id, whether this call created
    it, and its workflow (an existing run's may differ from the one asked for)."""

    run_id: str
    created: bool
    workflow: str


class RunStore:
    """Client-side operations on runs (see the module doc)."""

    def __init__(self, db: Database, family: Family) -> None:
        self._db = db
        self._q = db.q
        self._family = family

    # -- creating runs ---------------------------------------------------------------------

    def create_run(self, run: NewRun, conn: Conn | None = None) -> Created:
        """Create a run with its first events, unless its run_id or its idempotency key
        (per workflow) exists; then nothing is written and the existing run is named."""
        params = {
            "run_id": run.run_id,
            "workflow": run.workflow,
            "wake_at": run.wake_at,
            "last_seq": run.events[-1].seq if run.events else 0,
            "idempotency_key": run.idempotency_key,
            "deadline": run.deadline,
            "timeout_seconds": run.timeout_seconds,
            "timeout_unknown": run.timeout_unknown,
            "parent_run_id": run.parent_run_id,
            "parent_pos": run.parent_pos,
            "source_run_id": run.source_run_id,
            "now": run.now,
            "events": events_json(run.events),
            "notify": run.notify,
            "channel": self._db.work_channel,
        }
        if conn is not None:
            return self._create_on(conn, run, params)
        with self._db.connection() as c:
            return self._create_on(c, run, params)

    def _create_on(self, conn: Conn, run: NewRun, params: dict[str, Any]) -> Created:
        row = conn.execute(self._q["create_run"], params).fetchone()
        if row is not None:
            return Created(str(row[0]), True, run.workflow)
        found = conn.execute(
            self._q["find_existing_run"],
            {
                "run_id": run.run_id,
                "workflow": run.workflow,
                "idempotency_key": run.idempotency_key,
            },
        ).fetchone()
        if found is None:  # pragma: no cover - a concurrent prune between the two statements
            raise ConflictError(f"run {run.run_id!r} could not be created; try again")
        return Created(str(found[0]), False, str(found[1]))

    # -- talking to runs -------------------------------------------------------------------

    def signal(
        self, run_id: str, name: str, payload: Any, *, idempotency_key: str | None = None
    ) -> int | None:
        """Put a signal in the run's inbox and wake it; returns the signal id, or None when
        a signal with this ``idempotency_key`` was sent to the run before (nothing is
        stored then). Raises RunNotFound, or RunNotActive for a run that has ended."""
        with self._db.connection() as conn:
            row = conn.execute(
                self._q["send_signal"],
                {
                    "run_id": run_id,
                    "name": name,
                    "payload": jsonb_text(payload),
                    "key": idempotency_key,
                    "channel": self._db.work_channel,
                },
            ).fetchone()
            if row is not None:
                return int(row[1])
            status = conn.execute(self._q["run_status"], {"run_id": run_id}).fetchone()
        if status is None:
            raise RunNotFound(run_id)
        if RunStatus(status[0]) in TERMINAL_STATUSES or idempotency_key is None:
            raise RunNotActive(run_id, str(status[0]))
        return None  # sent before under this key

    def emit_event(self, key: str, payload: Any) -> bool:
        """Latch ``key`` (first write wins) and wake every run waiting for it."""

        def body(conn: Conn) -> bool:
            conn.execute(self._q["key_lock"], {"key": key})
            row = conn.execute(
                self._q["latched_put"], {"key": key, "payload": jsonb_text(payload)}
            ).fetchone()
            if row is None:
                return False
            conn.execute(self._q["wake_waiters"], {"key": key, "channel": self._db.work_channel})
            return True

        return self._db.run(body)

    def control(self, run_id: str, kind: str, reason: str | None, now: datetime) -> None:
        """Pause, resume or cancel a run (cancel cascades to its unfinished children)."""

        def body(conn: Conn) -> None:
            self._family.control(conn, run_id, kind, reason, now, raise_inactive=True)

        self._db.run(body)

    def retry(self, run_id: str, now: datetime) -> None:
        """Let a failed or blocked run continue where it stopped: ``run_retried`` voids its
        ``run_failed`` and, when a step's failure ended it, that step's failures."""

        def body(conn: Conn) -> None:
            lock = self._family.lock(conn, run_id)
            if lock.status not in (RunStatus.FAILED, RunStatus.BLOCKED):
                raise RunStateError(
                    f"run {run_id!r} is {lock.status}; only failed or blocked runs can be "
                    "retried (use rerun to start it over)",
                    run_id=run_id,
                    status=lock.status,
                )
            voids = self._voids(conn, lock.run_id, lock.status, lock.last_seq, lock.history_start)
            self._family.append(
                conn,
                lock,
                [NewEvent(lock.last_seq + 1, EventType.RUN_RETRIED, {"voids": voids}, now)],
                status=RunStatus.WAITING,
                wake_at=now,
                error=None,
                set_error=True,
                reopen=True,
            )
            self._family.notify(conn, self._db.work_channel, run_id)

        self._db.run(body)

    def _voids(
        self, conn: Conn, run_id: str, status: RunStatus, last_seq: int, history_start: int
    ) -> list[int]:
        if status != RunStatus.FAILED:
            return []
        last = conn.execute(
            self._q["copy_events"], {"run_id": run_id, "from_seq": last_seq, "to_seq": last_seq}
        ).fetchone()
        if last is None or last[1] != EventType.RUN_FAILED:
            return []
        voids = [int(last[0])]
        cause = (last[2] or {}).get("cause_pos")
        if cause is None:
            return voids
        failures = [
            int(r[0])
            for r in conn.execute(
                self._q["step_failure_seqs"],
                {"run_id": run_id, "from_seq": history_start, "pos": cause},
            )
        ]
        if failures:
            after = conn.execute(
                self._q["copy_events"],
                {"run_id": run_id, "from_seq": max(failures) + 1, "to_seq": 2**31 - 1},
            ).fetchall()
            quiet = (EventType.RUN_FAILED, EventType.STATUS_SET, EventType.PATCH_MARKER)
            if any(r[1] not in quiet for r in after):
                raise RunStateError(
                    f"run {run_id!r} handled the failure of its step at position {cause} (it "
                    "recorded more work, such as compensation, before failing); retrying "
                    "would run that step again after its compensation. Use rerun to start "
                    "it over.",
                    run_id=run_id,
                    status=status,
                )
        return sorted(voids + failures)

    # -- reading runs ----------------------------------------------------------------------

    def status(self, run_id: str) -> RunStatus:
        """The run's status."""
        with self._db.connection() as conn:
            row = conn.execute(self._q["run_status"], {"run_id": run_id}).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return RunStatus(row[0])

    def watch(self, run_id: str) -> RunStatus:
        """Ask for a notification on the done channel when the run ends; returns its
        current status."""
        with self._db.connection() as conn:
            row = conn.execute(self._q["watch"], {"run_id": run_id}).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return RunStatus(row[0])

    def get_run(self, run_id: str) -> RunRow:
        """The run's projection row plus its start and end event data."""
        with self._db.connection() as conn:
            row = conn.execute(self._q["get_run"], {"run_id": run_id}).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return _run_row(row)

    def history(self, run_id: str, *, upto: int | None = None) -> list[StoredEvent]:
        """The run's log in order (up to and including seq ``upto``)."""
        with self._db.connection() as conn:
            rows = conn.execute(
                self._q["history"], {"run_id": run_id, "upto": upto or 2**31 - 1}
            ).fetchall()
            if (
                not rows
                and conn.execute(self._q["run_status"], {"run_id": run_id}).fetchone() is None
            ):
                raise RunNotFound(run_id)
        return [StoredEvent(run_id, r[0], r[1], r[2], r[3]) for r in rows]

    def list_runs(
        self,
        *,
        workflow: str | None,
        status: str | None,
        search: str | None,
        limit: int,
        offset: int,
    ) -> tuple[list[RunRow], int]:
        """A page of runs, newest first, and the total that match."""
        pattern = None if search is None else f"%{_escape_like(search)}%"
        params = {
            "workflow": workflow,
            "status": status,
            "search": pattern,
            "limit": limit,
            "offset": offset,
        }
        with self._db.connection() as conn:
            rows = conn.execute(self._q["list_runs"], params).fetchall()
            if rows:
                total = int(rows[0][-1])
            else:
                total_row = conn.execute(self._q["count_runs"], params).fetchone()
                total = int(total_row[0]) if total_row else 0
        return [_run_row(r[:-1]) for r in rows], total

    def live_workers(self) -> list[WorkerRow]:
        """Workers whose last heartbeat is younger than their lease, oldest first."""
        with self._db.connection() as conn:
            rows = conn.execute(self._q["live_workers"]).fetchall()
        return [
            WorkerRow(
                worker_id=r[0],
                host=r[1],
                pid=r[2],
                started_at=r[3],
                last_seen=r[4],
                lease_seconds=r[5],
                concurrency=r[6],
                workflows=list(r[7]),
                queues=list(r[8]),
                runs_held=r[9],
            )
            for r in rows
        ]

    def stats(self) -> list[StatRow]:
        """How many runs each workflow has in each status (pairs that occur)."""
        with self._db.connection() as conn:
            rows = conn.execute(self._q["stats"]).fetchall()
        return [StatRow(r[0], RunStatus(r[1]), int(r[2])) for r in rows]

    def prune_batch(self, cutoff: datetime, batch: int) -> PruneCounts:
        """Delete up to ``batch`` ended runs older than ``cutoff`` with their rows, in one
        short transaction."""
        with self._db.connection() as conn:
            row = conn.execute(
                self._q["prune_batch"], {"cutoff": cutoff, "batch": batch}
            ).fetchone()
        assert row is not None
        return PruneCounts(int(row[0]), int(row[1]), int(row[2]))

    def find_run_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to ``limit`` run ids that start with ``prefix``, in order."""
        params = {"pattern": f"{_escape_like(prefix)}%", "limit": limit}
        with self._db.connection() as conn:
            rows = conn.execute(self._q["find_run_ids"], params).fetchall()
        return [str(r[0]) for r in rows]


def _run_row(r: Sequence[Any]) -> RunRow:
    return RunRow(
        run_id=r[0],
        workflow=r[1],
        status=RunStatus(r[2]),
        custom_status=r[3],
        error=r[4],
        created_at=r[5],
        started_at=r[6],
        finished_at=r[7],
        parent_run_id=r[8],
        source_run_id=r[9],
        idempotency_key=r[10],
        last_seq=r[11],
        history_start=r[12],
        wake_at=r[13],
        lease_owner=r[14],
        deadline=r[15],
        timeout_seconds=r[16],
        timeout_unknown=bool(r[17]),
        start_data=r[18],
        end_data=r[19],
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
