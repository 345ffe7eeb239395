"""What happens to a run's family inside the transaction that changes the run: controls
(pause, resume, cancel) with the cancel cascading to children, the effects of a run's end
(children cancelled, parent told, waiters cleared, result() notified), and the direct
appends of a client or of a worker acting for another run (no live lease on it).

Every function here runs inside a transaction that its caller (a unit of work of the
store) opened; none commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..replay.vocabulary import CLAIMABLE_STATUSES, TERMINAL_STATUSES, EventType, RunStatus
from ._db import Conn, Database
from ._errors import ConflictError, RunNotActive, RunNotFound
from ._records import NewEvent, events_json, jsonb_text

__all__ = ["Family", "RunLock"]


@dataclass(slots=True)
class RunLock:
    """A run row locked with FOR UPDATE inside a transaction."""

    run_id: str
    workflow: str
    status: RunStatus
    leased: bool
    last_seq: int
    history_start: int
    started: bool
    parent_run_id: str | None
    parent_pos: int | None
    #: control messages wait in the run's inbox
    queued: bool = False

    @property
    def takes_messages(self) -> bool:
        """Whether what happens to the run goes into its inbox (for the worker that holds
        it, or that will: messages queued before must keep their place in the log)."""
        return self.leased or (self.queued and self.status in CLAIMABLE_STATUSES)


class Family:
    """The in-transaction effects shared by the client's and the worker's units of work."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._q = db.q

    # -- rows ----------------------------------------------------------------------------

    def lock(self, conn: Conn, run_id: str) -> RunLock:
        """Lock a run's row (FOR UPDATE); raises RunNotFound."""
        row = conn.execute(self._q["lock_run"], {"run_id": run_id}).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return RunLock(
            run_id=row[0],
            workflow=row[1],
            status=RunStatus(row[2]),
            leased=bool(row[3] is not None and row[4]),
            last_seq=row[5],
            history_start=row[6],
            started=row[7] is not None,
            parent_run_id=row[8],
            parent_pos=row[9],
            queued=bool(row[11]),
        )

    def append(
        self,
        conn: Conn,
        lock: RunLock,
        events: Sequence[NewEvent],
        *,
        status: RunStatus,
        wake_at: datetime | None,
        error: dict[str, Any] | None = None,
        set_error: bool = False,
        finish: bool = False,
        reopen: bool = False,
    ) -> bool:
        """Append to a locked run nobody holds a live lease on; returns whether a client
        watches it (for a done notification)."""
        row = conn.execute(
            self._q["direct_append"],
            {
                "run_id": lock.run_id,
                "expected_seq": lock.last_seq,
                "new_seq": events[-1].seq if events else lock.last_seq,
                "events": events_json(events),
                "status": status,
                "wake_at": wake_at,
                "error": jsonb_text(error),
                "set_error": set_error,
                "finish": finish,
                "reopen": reopen,
            },
        ).fetchone()
        if row is None:  # pragma: no cover - the row lock makes this impossible
            raise ConflictError(f"run {lock.run_id!r} moved on during the change; try again")
        lock.last_seq = events[-1].seq if events else lock.last_seq
        lock.status = status
        return bool(row[0])

    def notify(self, conn: Conn, channel: str, payload: str) -> None:
        """pg_notify, delivered at the transaction's commit."""
        conn.execute(self._q["notify"], {"channel": channel, "payload": payload})

    # -- controls ------------------------------------------------------------------------

    def control(
        self,
        conn: Conn,
        run_id: str,
        kind: str,
        reason: str | None,
        now: datetime,
        *,
        raise_inactive: bool,
    ) -> None:
        """Apply pause / resume / cancel to a run: queued for the worker that holds its
        lease, else appended to its log directly. A cancel cascades to its children."""
        lock = self.lock(conn, run_id)
        if lock.status in TERMINAL_STATUSES:
            if raise_inactive:
                raise RunNotActive(run_id, lock.status)
            return
        self._apply(conn, lock, kind, reason, now)
        if kind == "cancel":
            # The run's own cancel first, then its children's: a child that ends because
            # of this cancel reports to a parent whose log (or inbox) already holds the
            # cancel, so the parent sees Cancelled, never ChildFailed, whatever the order
            # in which the children's ends arrive.
            for child in self._active_children(conn, run_id):
                self.control(
                    conn, child, "cancel", f"parent {run_id} cancelled", now, raise_inactive=False
                )

    def _apply(
        self, conn: Conn, lock: RunLock, kind: str, reason: str | None, now: datetime
    ) -> None:
        run_id = lock.run_id
        if lock.takes_messages:
            data = {"reason": reason} if kind == "cancel" else {}
            self._post_control(conn, run_id, kind, data)
            self.notify(conn, self._db.work_channel, run_id)
            return
        seq = lock.last_seq + 1
        if kind == "pause":
            if lock.status != RunStatus.PAUSED:
                self.append(
                    conn,
                    lock,
                    [NewEvent(seq, EventType.RUN_PAUSED, {}, now)],
                    status=RunStatus.PAUSED,
                    wake_at=None,
                )
        elif kind == "resume":
            if lock.status == RunStatus.PAUSED:
                self.append(
                    conn,
                    lock,
                    [NewEvent(seq, EventType.RUN_RESUMED, {}, now)],
                    status=RunStatus.WAITING if lock.started else RunStatus.PENDING,
                    wake_at=now,
                )
        elif kind == "cancel":
            if not lock.started or lock.status == RunStatus.BLOCKED:
                # Nothing can run compensation: the generator never started, or its code no
                # longer matches the log. The run ends here.
                event = NewEvent(seq, EventType.RUN_CANCELLED, {"reason": reason}, now)
                watched = self.append(
                    conn, lock, [event], status=RunStatus.CANCELLED, wake_at=None, finish=True
                )
                self.after_end(
                    conn,
                    lock.run_id,
                    lock.parent_run_id,
                    lock.parent_pos,
                    RunStatus.CANCELLED,
                    event.data,
                    watched,
                    now,
                )
            else:
                self.append(
                    conn,
                    lock,
                    [NewEvent(seq, EventType.CANCEL_REQUESTED, {"reason": reason}, now)],
                    status=RunStatus.WAITING,
                    wake_at=now,
                )
                self.notify(conn, self._db.work_channel, run_id)
        else:  # pragma: no cover - internal misuse
            raise ValueError(f"unknown control {kind!r}")

    # -- a run's end -----------------------------------------------------------------------

    def after_end(
        self,
        conn: Conn,
        run_id: str,
        parent_run_id: str | None,
        parent_pos: int | None,
        status: RunStatus,
        end_data: dict[str, Any],
        watched: bool,
        now: datetime,
    ) -> None:
        """Side effects of a run's end, inside the transaction that ends it."""
        conn.execute(self._q["waiters_clear"], {"run_id": run_id})
        for child in self._active_children(conn, run_id):
            self.control(
                conn, child, "cancel", f"parent {run_id} ended {status}", now, raise_inactive=False
            )
        if parent_run_id is not None and parent_pos is not None:
            self._tell_parent(conn, parent_run_id, parent_pos, run_id, status, end_data, now)
        if watched:
            self.notify(conn, self._db.done_channel, run_id)

    def _tell_parent(
        self,
        conn: Conn,
        parent_run_id: str,
        pos: int,
        child_run_id: str,
        status: RunStatus,
        end_data: dict[str, Any],
        now: datetime,
    ) -> None:
        """Tell the parent how its child ended: queued if a worker holds the parent,
        else appended to the parent's log directly."""
        etype, data = child_result(pos, child_run_id, status, end_data)
        lock = self.lock(conn, parent_run_id)
        if lock.status in TERMINAL_STATUSES:
            return
        if lock.takes_messages:
            self._post_control(conn, parent_run_id, "child_done", {"type": etype, "data": data})
            self.notify(conn, self._db.work_channel, parent_run_id)
            return
        stopped = lock.status in (RunStatus.PAUSED, RunStatus.BLOCKED)
        self.append(
            conn,
            lock,
            [NewEvent(lock.last_seq + 1, etype, data, now)],
            status=lock.status if stopped else RunStatus.WAITING,
            wake_at=None if stopped else now,
        )
        if not stopped:
            self.notify(conn, self._db.work_channel, parent_run_id)

    # -- helpers ---------------------------------------------------------------------------

    def _active_children(self, conn: Conn, run_id: str) -> list[str]:
        return [r[0] for r in conn.execute(self._q["active_children"], {"run_id": run_id})]

    def _post_control(self, conn: Conn, run_id: str, kind: str, data: dict[str, Any]) -> None:
        conn.execute(
            self._q["post_control"], {"run_id": run_id, "kind": kind, "data": jsonb_text(data)}
        )


def child_result(
    pos: int, child_run_id: str, status: RunStatus, end_data: dict[str, Any]
) -> tuple[EventType, dict[str, Any]]:
    """The event that tells a parent how its child at ``pos`` ended."""
    if status == RunStatus.COMPLETED:
        return EventType.CHILD_COMPLETED, {
            "pos": pos,
            "child_run_id": child_run_id,
            "result": end_data.get("result"),
        }
    error_type = end_data.get("error_type") or {
        RunStatus.CANCELLED: "durable.Cancelled",
        RunStatus.TIMED_OUT: "durable.RunTimedOut",
    }.get(status, str(status))
    message = end_data.get("message") or end_data.get("reason") or f"child {status}"
    return EventType.CHILD_FAILED, {
        "pos": pos,
        "child_run_id": child_run_id,
        "status": str(status),
        "error_type": error_type,
        "message": message,
    }
