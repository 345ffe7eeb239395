"""The client's units of work: creating runs, signals, latched events, controls, retry,
and reading runs back. Each method returns a :class:`Unit` (see ``_plan``) that a sync
or an async executor runs, on a pooled connection or on the caller's own."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..replay.vocabulary import TERMINAL_STATUSES, EventType, RunStatus
from ._db import Database
from ._errors import ConflictError, RunNotActive, RunNotFound, RunStateError
from ._family import Family
from ._plan import Plan, Query, Unit
from ._records import (
    BucketRow,
    KeyCount,
    NewEvent,
    NewRun,
    PendingFacts,
    PruneCounts,
    QueueRow,
    QueueSpec,
    RunRow,
    StatRow,
    StoredEvent,
    WorkerRow,
    events_data,
    events_json,
    jsonb_text,
)

__all__ = ["NEW_UNQUEUED", "Created", "RunStore"]

# The work channel's payload for the start of runs of no queue (not a run id: nobody
# holds a new run). Any other payload may concern a queue's run: a worker claims through
# its queues then too; this one spares it that statement (docs/internals.md, 4.1).
NEW_UNQUEUED = "*new*"

_MAX_SEQ = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Created:
    """The outcome of :meth:`RunStore.create_run`: the run's id, whether this call created
    it, and its workflow (an existing run's may differ from the one asked for)."""

    run_id: str
    created: bool
    workflow: str


class RunStore:
    """Client-side operations on runs (see the module doc); no method does I/O."""

    def __init__(self, db: Database, family: Family) -> None:
        self._db = db
        self._q = db.q
        self._family = family

    # -- creating runs ---------------------------------------------------------------------

    def create_run(self, run: NewRun) -> Unit[Created]:
        """Create a run with its first events, unless its run_id or its idempotency key
        (per workflow) exists; then nothing is written and the existing run is named."""
        return Unit(functools.partial(self.create_plan, run))

    def create_plan(self, run: NewRun) -> Plan[Created]:
        """The plan of :meth:`create_run`, to compose into a larger unit of work."""
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
            "new_unqueued": NEW_UNQUEUED,
            "queue": run.queue,
            "priority": run.priority,
            "concurrency_key": run.concurrency_key,
            "dedup_key": run.dedup_key,
        }
        row = yield Query(self._q["create_run"], params)
        if row is not None:
            return Created(str(row[0]), True, run.workflow)
        found = yield self._existing(run)
        if found is None:  # pragma: no cover - a concurrent prune between the two statements
            raise ConflictError(f"run {run.run_id!r} could not be created; try again")
        return Created(str(found[0]), False, str(found[1]))

    def _existing(self, run: NewRun) -> Query:
        """The query for the run that kept ``run`` from being created."""
        return Query(
            self._q["find_existing_run"],
            {
                "run_id": run.run_id,
                "workflow": run.workflow,
                "idempotency_key": run.idempotency_key,
                "queue": run.queue,
                "dedup_key": run.dedup_key,
            },
        )

    def create_runs(self, runs: Sequence[NewRun]) -> Unit[list[Created]]:
        """Create many runs in one statement (each as :meth:`create_run` would, with one
        notification for all); the ones whose run id or keys exist name the existing run."""
        # one transaction: a run id taken by another workflow's run undoes the whole batch
        return Unit(functools.partial(self._create_runs, list(runs)), tx=True)

    def _create_runs(self, runs: list[NewRun]) -> Plan[list[Created]]:
        if not runs:
            return []
        rows = [
            {
                "i": i,
                "run_id": run.run_id,
                "workflow": run.workflow,
                "wake_at": run.wake_at.isoformat(),
                "last_seq": run.events[-1].seq if run.events else 0,
                "idempotency_key": run.idempotency_key,
                "deadline": run.deadline.isoformat() if run.deadline else None,
                "timeout_seconds": run.timeout_seconds,
                "timeout_unknown": run.timeout_unknown,
                "queue": run.queue,
                "priority": run.priority,
                "concurrency_key": run.concurrency_key,
                "dedup_key": run.dedup_key,
                "events": events_data(run.events),
                "notify": run.notify,
            }
            for i, run in enumerate(runs)
        ]
        params = {
            "runs": json.dumps(rows, separators=(",", ":")),
            "now": runs[0].now,
            "channel": self._db.work_channel,
            "new_unqueued": NEW_UNQUEUED,
        }
        row = yield Query(self._q["create_runs"], params)
        made = set(row[0]) if row is not None else set()
        out: list[Created] = []
        for run in runs:
            if run.run_id in made:
                out.append(Created(run.run_id, True, run.workflow))
                made.discard(run.run_id)  # a second copy of the same id names the first
                continue
            found = yield self._existing(run)
            if found is None:  # pragma: no cover - a concurrent prune between statements
                raise ConflictError(f"run {run.run_id!r} could not be created; try again")
            if str(found[0]) == run.run_id and str(found[1]) != run.workflow:
                raise RunStateError(
                    f"run {run.run_id!r} exists and is a run of workflow {found[1]!r}, not "
                    f"{run.workflow!r}; choose another run_id (no run of this batch was "
                    "started)",
                    run_id=run.run_id,
                )
            out.append(Created(str(found[0]), False, str(found[1])))
        return out

    # -- talking to runs -------------------------------------------------------------------

    def signal(
        self, run_id: str, name: str, payload: Any, *, idempotency_key: str | None = None
    ) -> Unit[int | None]:
        """Put a signal in the run's inbox and wake it; returns the signal id, or None when
        a signal with this ``idempotency_key`` was sent to the run before (nothing is
        stored then). Raises RunNotFound, or RunNotActive for a run that has ended."""
        return Unit(functools.partial(self._signal, run_id, name, payload, idempotency_key))

    def _signal(
        self, run_id: str, name: str, payload: Any, idempotency_key: str | None
    ) -> Plan[int | None]:
        row = yield Query(
            self._q["send_signal"],
            {
                "run_id": run_id,
                "name": name,
                "payload": jsonb_text(payload),
                "key": idempotency_key,
                "channel": self._db.work_channel,
            },
        )
        if row is not None:
            return int(row[1])
        status = yield Query(self._q["run_status"], {"run_id": run_id})
        if status is None:
            raise RunNotFound(run_id)
        if RunStatus(status[0]) in TERMINAL_STATUSES or idempotency_key is None:
            raise RunNotActive(run_id, str(status[0]))
        return None  # sent before under this key

    def emit_event(self, key: str, payload: Any) -> Unit[bool]:
        """Latch ``key`` (first write wins) and wake every run waiting for it."""
        return Unit(functools.partial(self._emit, key, payload), tx=True)

    def _emit(self, key: str, payload: Any) -> Plan[bool]:
        yield Query(self._q["key_lock"], {"key": key}, "none")
        row = yield Query(self._q["latched_put"], {"key": key, "payload": jsonb_text(payload)})
        if row is None:
            return False
        yield Query(self._q["wake_waiters"], {"key": key, "channel": self._db.work_channel}, "none")
        return True

    def control(self, run_id: str, kind: str, reason: str | None, now: datetime) -> Unit[None]:
        """Pause, resume or cancel a run (cancel cascades to its unfinished children)."""
        return Unit(
            functools.partial(self._family.control, run_id, kind, reason, now, raise_inactive=True),
            tx=True,
        )

    def retry(self, run_id: str, now: datetime) -> Unit[None]:
        """Let a failed or blocked run continue where it stopped: ``run_retried`` voids its
        ``run_failed`` and, when a step's failure ended it, that step's failures."""
        return Unit(functools.partial(self._retry, run_id, now), tx=True)

    def _retry(self, run_id: str, now: datetime) -> Plan[None]:
        lock = yield from self._family.lock(run_id)
        if lock.status not in (RunStatus.FAILED, RunStatus.BLOCKED):
            raise RunStateError(
                f"run {run_id!r} is {lock.status}; only failed or blocked runs can be "
                "retried (use rerun to start it over)",
                run_id=run_id,
                status=lock.status,
            )
        voids = yield from self._voids(lock.run_id, lock.status, lock.last_seq, lock.history_start)
        yield from self._family.append(
            lock,
            [NewEvent(lock.last_seq + 1, EventType.RUN_RETRIED, {"voids": voids}, now)],
            status=RunStatus.WAITING,
            wake_at=now,
            error=None,
            set_error=True,
            reopen=True,
        )
        # A run of a queue gave its slot up when it ended or was blocked: it starts again
        # through its queue.
        yield Query(self._q["readmit"], {"run_id": run_id}, "none")
        yield from self._family.notify(self._db.work_channel, run_id)

    def _voids(
        self, run_id: str, status: RunStatus, last_seq: int, history_start: int
    ) -> Plan[list[int]]:
        if status != RunStatus.FAILED:
            return []
        last = yield Query(
            self._q["copy_events"], {"run_id": run_id, "from_seq": last_seq, "to_seq": last_seq}
        )
        if last is None or last[1] != EventType.RUN_FAILED:
            return []
        voids = [int(last[0])]
        cause = (last[2] or {}).get("cause_pos")
        if cause is None:
            return voids
        rows = yield Query(
            self._q["step_failure_seqs"],
            {"run_id": run_id, "from_seq": history_start, "pos": cause},
            "all",
        )
        failures = [int(r[0]) for r in rows]
        if failures:
            after = yield Query(
                self._q["copy_events"],
                {"run_id": run_id, "from_seq": max(failures) + 1, "to_seq": _MAX_SEQ},
                "all",
            )
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

    def status(self, run_id: str) -> Unit[RunStatus]:
        """The run's status."""
        return Unit(functools.partial(self._status, "run_status", run_id))

    def watch(self, run_id: str) -> Unit[RunStatus]:
        """Ask for a notification on the done channel when the run ends; returns its
        current status."""
        return Unit(functools.partial(self._status, "watch", run_id))

    def _status(self, query: str, run_id: str) -> Plan[RunStatus]:
        row = yield Query(self._q[query], {"run_id": run_id})
        if row is None:
            raise RunNotFound(run_id)
        return RunStatus(row[0])

    def get_run(self, run_id: str) -> Unit[RunRow]:
        """The run's projection row plus its start and end event data."""
        return Unit(functools.partial(self._get_run, run_id))

    def _get_run(self, run_id: str) -> Plan[RunRow]:
        row = yield Query(self._q["get_run"], {"run_id": run_id})
        if row is None:
            raise RunNotFound(run_id)
        return _run_row(row)

    def history(self, run_id: str, *, upto: int | None = None) -> Unit[list[StoredEvent]]:
        """The run's log in order (up to and including seq ``upto``)."""
        return Unit(functools.partial(self._history, run_id, upto or _MAX_SEQ))

    def _history(self, run_id: str, upto: int) -> Plan[list[StoredEvent]]:
        rows = yield Query(self._q["history"], {"run_id": run_id, "upto": upto}, "all")
        if not rows and (yield Query(self._q["run_status"], {"run_id": run_id})) is None:
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
    ) -> Unit[tuple[list[RunRow], int]]:
        """A page of runs, newest first, and the total that match."""
        pattern = None if search is None else f"%{_escape_like(search)}%"
        params = {
            "workflow": workflow,
            "status": status,
            "search": pattern,
            "limit": limit,
            "offset": offset,
        }
        return Unit(functools.partial(self._list_runs, params))

    def _list_runs(self, params: dict[str, Any]) -> Plan[tuple[list[RunRow], int]]:
        # The page reads the newest-first index and stops at its limit; the total is its
        # own count (an index-only scan where a filter allows), skipped when the page
        # shows it is the whole of the match.
        rows = yield Query(self._q["list_runs"], params, "all")
        if len(rows) < params["limit"] and (rows or not params["offset"]):
            total = params["offset"] + len(rows)
        else:
            total_row = yield Query(self._q["count_runs"], params)
            total = int(total_row[0]) if total_row else 0
        return [_run_row(r) for r in rows], total

    def live_workers(self) -> Unit[list[WorkerRow]]:
        """Workers whose last heartbeat is younger than their lease, oldest first."""
        return Unit(self._live_workers)

    def _live_workers(self) -> Plan[list[WorkerRow]]:
        rows = yield Query(self._q["live_workers"], None, "all")
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

    def stats(self) -> Unit[list[StatRow]]:
        """How many runs each workflow has in each status (pairs that occur)."""
        return Unit(self._stats)

    def _stats(self) -> Plan[list[StatRow]]:
        rows = yield Query(self._q["stats"], None, "all")
        return [StatRow(r[0], RunStatus(r[1]), int(r[2])) for r in rows]

    def timeseries(
        self, unit: str, since: datetime, until: datetime, workflow: str | None
    ) -> Unit[list[BucketRow]]:
        """Buckets of one ``unit`` (``hour`` or ``day``) in ``[since, until)``; ``since``
        and ``until`` are on bucket boundaries."""
        params = {
            "unit": unit,
            "since": since,
            "until": until,
            "workflow": workflow,
        }
        return Unit(functools.partial(self._timeseries, params))

    def _timeseries(self, params: dict[str, Any]) -> Plan[list[BucketRow]]:
        rows = yield Query(self._q["timeseries"], params, "all")
        return [
            BucketRow(
                r[0],
                int(r[1]),
                int(r[2]),
                int(r[3]),
                None if r[4] is None else float(r[4]),
                None if r[5] is None else float(r[5]),
            )
            for r in rows
        ]

    def prune_batch(self, cutoff: datetime, batch: int) -> Unit[PruneCounts]:
        """Delete up to ``batch`` ended runs older than ``cutoff`` with their rows, in one
        short transaction."""
        return Unit(functools.partial(self._prune_batch, cutoff, batch))

    def _prune_batch(self, cutoff: datetime, batch: int) -> Plan[PruneCounts]:
        row = yield Query(self._q["prune_batch"], {"cutoff": cutoff, "batch": batch})
        assert row is not None
        return PruneCounts(int(row[0]), int(row[1]), int(row[2]))

    # -- queues ----------------------------------------------------------------------------

    def put_queue(self, spec: QueueSpec) -> Unit[None]:
        """Write a queue's declaration (the latest wins)."""
        return Unit(functools.partial(self._put_queue, spec))

    def _put_queue(self, spec: QueueSpec) -> Plan[None]:
        yield Query(
            self._q["queue_put"],
            {
                "name": spec.name,
                "concurrency": spec.concurrency,
                "worker_concurrency": spec.worker_concurrency,
                "key_concurrency": spec.key_concurrency,
                "rate_limit": spec.rate_limit,
                "rate_per": spec.rate_per,
            },
            "none",
        )

    def get_queue(self, name: str) -> Unit[QueueSpec | None]:
        """A queue's stored limits (None: no such queue)."""
        return Unit(functools.partial(self._get_queue, name))

    def _get_queue(self, name: str) -> Plan[QueueSpec | None]:
        row = yield Query(self._q["queue_get"], {"name": name})
        return None if row is None else QueueSpec(*row[:6])

    def queues(self) -> Unit[list[QueueRow]]:
        """Every queue with its limits and counts."""
        return Unit(self._queues)

    def _queues(self) -> Plan[list[QueueRow]]:
        rows = yield Query(self._q["queues_info"], None, "all")
        return [QueueRow(QueueSpec(*r[:6]), int(r[6]), int(r[7])) for r in rows]

    def busiest_keys(self, queue: str, limit: int = 5) -> Unit[list[KeyCount]]:
        """The concurrency keys of ``queue`` with the most runs holding a slot."""
        return Unit(functools.partial(self._busiest_keys, queue, limit))

    def _busiest_keys(self, queue: str, limit: int) -> Plan[list[KeyCount]]:
        rows = yield Query(self._q["queue_busiest_keys"], {"queue": queue, "limit": limit}, "all")
        return [KeyCount(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    def pending_facts(self, run_id: str) -> Unit[PendingFacts | None]:
        """What a pending run waits for (None: no such run)."""
        return Unit(functools.partial(self._pending_facts, run_id))

    def _pending_facts(self, run_id: str) -> Plan[PendingFacts | None]:
        r = yield Query(self._q["pending_facts"], {"run_id": run_id})
        if r is None:
            return None
        next_in = r[10].total_seconds() if r[10] is not None else None
        return PendingFacts(
            wake_at=r[0],
            deferred=bool(r[1]),
            served=bool(r[2]),
            concurrency=r[3],
            key_concurrency=r[4],
            rate_limit=r[5],
            rate_per=r[6],
            held=int(r[7]),
            key_held=int(r[8]),
            recent=int(r[9]),
            next_start_in=next_in,
            ahead=int(r[11]),
        )

    def find_run_ids(self, prefix: str, limit: int = 2) -> Unit[list[str]]:
        """Up to ``limit`` run ids that start with ``prefix``, in order."""
        params = {"pattern": f"{_escape_like(prefix)}%", "limit": limit}
        return Unit(functools.partial(self._find_run_ids, params))

    def _find_run_ids(self, params: dict[str, Any]) -> Plan[list[str]]:
        rows = yield Query(self._q["find_run_ids"], params, "all")
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
        queue=r[20],
        priority=r[21],
        concurrency_key=r[22],
        dedup_key=r[23],
        admitted_at=r[24],
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
