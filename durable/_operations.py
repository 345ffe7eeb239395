"""The App's operations on existing runs: pause, resume, cancel (and what a run's end
does to its family), retry, rerun, fork and prune. Everything here runs in the caller's
process, in short transactions, whether or not a worker is running."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from ._handle import RunHandle, WorkflowDef, new_seed, utcnow
from ._models import PruneResult, seconds
from .replay.errors import (
    RunNotActive,
    RunStateError,
)
from .store import NewEvent, Store
from .store._store import TERMINAL, RunLock

__all__ = ["OperationsMixin"]


class OperationsMixin:
    """Operations on runs; ``durable.App`` inherits them."""

    if TYPE_CHECKING:
        workflows: dict[str, WorkflowDef]

        @property
        def store(self) -> Store: ...

        def handle(self, run_id: str) -> RunHandle: ...

    def _control(self, run_id: str, kind: str, data: dict[str, Any]) -> None:
        def body(conn: psycopg.Connection[Any]) -> None:
            self._apply_control(conn, run_id, kind, data, utcnow(), raise_inactive=True)

        self.store.run_in_tx(body)

    def _apply_control(
        self,
        conn: psycopg.Connection[Any],
        run_id: str,
        kind: str,
        data: dict[str, Any],
        now: datetime,
        *,
        raise_inactive: bool,
    ) -> None:
        """Apply pause/resume/cancel to a run inside the caller's transaction: queued for
        the worker that holds its lease, else appended to its log directly."""
        store = self.store
        lock = store.lock_run(conn, run_id)
        if lock.status in TERMINAL:
            if raise_inactive:
                raise RunNotActive(run_id, lock.status)
            return
        if kind == "cancel":
            for child in store.active_children(conn, run_id):
                self._apply_control(
                    conn,
                    child,
                    "cancel",
                    {"reason": f"parent {run_id} cancelled"},
                    now,
                    raise_inactive=False,
                )
        if lock.leased:
            store.post_control(conn, run_id, kind, data)
            store.notify(conn, store.channel, run_id)
            return
        seq = lock.last_seq + 1
        if kind == "pause":
            if lock.status != "paused":
                store.direct_append(
                    conn,
                    lock,
                    [NewEvent(seq, "run_paused", {}, now)],
                    status="paused",
                    wake_at=None,
                )
        elif kind == "resume":
            if lock.status == "paused":
                store.direct_append(
                    conn,
                    lock,
                    [NewEvent(seq, "run_resumed", {}, now)],
                    status="waiting" if lock.started else "pending",
                    wake_at=now,
                )
        elif kind == "cancel":
            reason = data.get("reason")
            if not lock.started or lock.status == "blocked":
                # Nothing can run compensation: the generator never started, or its code no
                # longer matches the log. The run ends here.
                self._finish_direct(
                    conn,
                    lock,
                    [NewEvent(seq, "run_cancelled", {"reason": reason}, now)],
                    status="cancelled",
                    now=now,
                )
            else:
                store.direct_append(
                    conn,
                    lock,
                    [NewEvent(seq, "cancel_requested", {"reason": reason}, now)],
                    status="waiting",
                    wake_at=now,
                )
                store.notify(conn, store.channel, run_id)
        else:  # pragma: no cover - internal misuse
            raise ValueError(f"unknown control {kind!r}")

    def _finish_direct(
        self,
        conn: psycopg.Connection[Any],
        lock: RunLock,
        events: list[NewEvent],
        *,
        status: str,
        now: datetime,
        error: dict[str, Any] | None = None,
    ) -> None:
        """End an unleased run from the client side, with the same side effects as a
        worker's finish (parent told, children cancelled, waiters notified)."""
        watched = self.store.direct_append(
            conn,
            lock,
            events,
            status=status,
            wake_at=None,
            finish=True,
            error=error,
            set_error=error is not None,
        )
        self._after_finish(
            conn,
            lock.run_id,
            lock.parent_run_id,
            lock.parent_pos,
            status,
            events[-1].data,
            watched,
            now,
        )

    def _after_finish(
        self,
        conn: psycopg.Connection[Any],
        run_id: str,
        parent_run_id: str | None,
        parent_pos: int | None,
        status: str,
        end_data: dict[str, Any],
        watched: bool,
        now: datetime,
    ) -> None:
        """Side effects of a run's end, inside the transaction that ends it."""
        store = self.store
        conn.execute(store.q("waiters_clear"), {"run_id": run_id})
        for child in store.active_children(conn, run_id):
            self._apply_control(
                conn,
                child,
                "cancel",
                {"reason": f"parent {run_id} ended {status}"},
                now,
                raise_inactive=False,
            )
        if parent_run_id is not None and parent_pos is not None:
            self._deliver_child_result(
                conn, parent_run_id, parent_pos, run_id, status, end_data, now
            )
        if watched:
            store.notify(conn, store.done_channel, run_id)

    def _deliver_child_result(
        self,
        conn: psycopg.Connection[Any],
        parent_run_id: str,
        pos: int,
        child_run_id: str,
        status: str,
        end_data: dict[str, Any],
        now: datetime,
    ) -> None:
        """Tell the parent how its child ended: queued if a worker holds the parent,
        else appended to the parent's log directly."""
        store = self.store
        if status == "completed":
            etype = "child_completed"
            data: dict[str, Any] = {
                "pos": pos,
                "child_run_id": child_run_id,
                "result": end_data.get("result"),
            }
        else:
            etype = "child_failed"
            error_type = end_data.get("error_type") or {
                "cancelled": "durable.Cancelled",
                "timed_out": "durable.RunTimedOut",
            }.get(status, status)
            message = end_data.get("message") or end_data.get("reason") or f"child {status}"
            data = {
                "pos": pos,
                "child_run_id": child_run_id,
                "status": status,
                "error_type": error_type,
                "message": message,
            }
        lock = store.lock_run(conn, parent_run_id)
        if lock.status in TERMINAL:
            return
        if lock.leased:
            store.post_control(conn, parent_run_id, "child_done", {"type": etype, "data": data})
            store.notify(conn, store.channel, parent_run_id)
            return
        paused = lock.status in ("paused", "blocked")
        store.direct_append(
            conn,
            lock,
            [NewEvent(lock.last_seq + 1, etype, data, now)],
            status=lock.status if paused else "waiting",
            wake_at=None if paused else now,
        )
        if not paused:
            store.notify(conn, store.channel, parent_run_id)

    # -- operating -----------------------------------------------------------------

    def retry(self, run_id: str) -> RunHandle:
        """Continue a ``failed`` or ``blocked`` run from where it stopped: the step that
        failed runs again with fresh attempts; completed steps are not re-executed."""
        store = self.store

        def body(conn: psycopg.Connection[Any]) -> None:
            lock = store.lock_run(conn, run_id)
            if lock.status not in ("failed", "blocked"):
                raise RunStateError(
                    f"run {run_id!r} is {lock.status}; only failed or blocked runs can be "
                    "retried (use rerun to start it over)",
                    run_id=run_id,
                    status=lock.status,
                )
            voids: list[int] = []
            if lock.status == "failed":
                last = conn.execute(
                    store.q("copy_events"),
                    {"run_id": run_id, "from_seq": lock.last_seq, "to_seq": lock.last_seq},
                ).fetchone()
                if last is not None and last[1] == "run_failed":
                    voids.append(int(last[0]))
                    cause = (last[2] or {}).get("cause_pos")
                    if cause is not None:
                        failures = [
                            int(r[0])
                            for r in conn.execute(
                                store.q("step_failure_seqs"),
                                {"run_id": run_id, "from_seq": lock.history_start, "pos": cause},
                            )
                        ]
                        if failures and _work_after(conn, store, run_id, max(failures)):
                            raise RunStateError(
                                f"run {run_id!r} handled the failure of its step at position "
                                f"{cause} (it recorded more work, such as compensation, before "
                                "failing); retrying would run that step again after its "
                                "compensation. Use rerun to start it over.",
                                run_id=run_id,
                                status=lock.status,
                            )
                        voids.extend(failures)
            now = utcnow()
            store.direct_append(
                conn,
                lock,
                [NewEvent(lock.last_seq + 1, "run_retried", {"voids": sorted(voids)}, now)],
                status="waiting",
                wake_at=now,
                error=None,
                set_error=True,
                reopen=True,
            )
            store.notify(conn, store.channel, run_id)

        store.run_in_tx(body)
        return self.handle(run_id)

    def rerun(self, run_id: str) -> RunHandle:
        """A new run of the same workflow and arguments; its ``source_run_id`` is this one."""
        row = self.store.get_run(run_id)
        start = row.get("start_data") or {}
        now = utcnow()
        new_id = str(uuid.uuid4())
        event = NewEvent(
            1,
            "run_started",
            {"workflow": row["workflow"], "args": start.get("args", []), "seed": new_seed()},
            now,
        )
        wf = self.workflows.get(row["workflow"])
        deadline = now + timedelta(seconds=wf.timeout) if wf and wf.timeout else None
        self.store.create_run(
            run_id=new_id,
            workflow=row["workflow"],
            events=[event],
            now=now,
            wake_at=now,
            deadline=deadline,
            source_run_id=run_id,
        )
        return self.handle(new_id)

    def fork(self, run_id: str, at_seq: int) -> RunHandle:
        """A new run whose log starts as a copy of this run's log up to ``at_seq``, so the
        steps recorded there are not executed again."""
        store = self.store
        row = store.get_run(run_id)
        if at_seq < row["history_start"] or at_seq > row["last_seq"]:
            raise ValueError(
                f"at_seq must be between {row['history_start']} and {row['last_seq']} "
                f"for run {run_id!r}"
            )
        events = [e for e in store.history(run_id) if e.seq <= at_seq]
        copied = _fork_events(events)
        now = utcnow()
        new_id = str(uuid.uuid4())
        renumbered = [NewEvent(i + 1, e.type, e.data, e.created_at) for i, e in enumerate(copied)]
        wf = self.workflows.get(row["workflow"])
        deadline = now + timedelta(seconds=wf.timeout) if wf and wf.timeout else None
        store.create_run(
            run_id=new_id,
            workflow=row["workflow"],
            events=renumbered,
            now=now,
            wake_at=now,
            deadline=deadline,
            source_run_id=run_id,
        )
        return self.handle(new_id)

    def prune(self, older_than: timedelta | datetime | float, *, batch: int = 500) -> PruneResult:
        """Delete runs that ended before the cutoff (a datetime, or an age as timedelta or
        seconds), with all their log rows, in short batches."""
        if isinstance(older_than, datetime):
            if older_than.utcoffset() is None:
                raise ValueError("a prune cutoff datetime must be aware (with a timezone)")
            cutoff = older_than
        else:
            age = seconds(older_than, "older_than")
            assert age is not None
            cutoff = utcnow() - timedelta(seconds=age)
        result = PruneResult()
        for runs, events, signals in self._prune_batches(cutoff, batch):
            result = PruneResult(
                runs=result.runs + runs,
                events=result.events + events,
                signals=result.signals + signals,
            )
        return result

    def _prune_batches(self, cutoff: datetime, batch: int) -> Iterator[tuple[int, int, int]]:
        while True:
            counts = self.store.prune_batch(cutoff, batch)
            if counts[0] == 0:
                return
            yield counts


def _fork_events(events: list[Any]) -> list[Any]:
    """The events a fork copies: voids applied, operational and terminal events dropped,
    children that never reported back forgotten (the fork starts its own)."""
    voided: set[int] = set()
    for e in events:
        if e.type == "run_retried":
            voided.update(int(s) for s in e.data.get("voids", []))
    drop_types = {
        "run_retried",
        "run_blocked",
        "run_completed",
        "run_failed",
        "run_cancelled",
        "run_timed_out",
        "run_paused",
        "run_resumed",
        "cancel_requested",
    }
    kept = [e for e in events if e.seq not in voided and e.type not in drop_types]
    finished_children = {
        e.data.get("pos") for e in kept if e.type in ("child_completed", "child_failed")
    }
    return [
        e
        for e in kept
        if not (e.type == "child_started" and e.data.get("pos") not in finished_children)
    ]


def _work_after(conn: psycopg.Connection[Any], store: Store, run_id: str, seq: int) -> bool:
    """Whether the workflow recorded work after ``seq`` (other than its end)."""
    rows = conn.execute(
        store.q("copy_events"), {"run_id": run_id, "from_seq": seq + 1, "to_seq": 2**31 - 1}
    ).fetchall()
    return any(r[1] not in ("run_failed", "status_set", "patch_marker") for r in rows)
