"""What happens to a run's family inside the transaction that changes the run: controls
(pause, resume, cancel) with the cancel cascading to children, the effects of a run's end
(children cancelled, parent told, waiters cleared, result() notified), and the direct
appends of a client or of a worker acting for another run (no live lease on it).

Every method here is a plan (see ``_plan``) that runs inside a transaction its caller (a
unit of work of the store) opened; none commits. ``yield from`` composes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..replay.vocabulary import CLAIMABLE_STATUSES, TERMINAL_STATUSES, EventType, RunStatus
from ._db import Database
from ._errors import ConflictError, RunNotActive, RunNotFound
from ._plan import Plan, Query
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

    def lock(self, run_id: str) -> Plan[RunLock]:
        """Lock a run's row (FOR UPDATE); raises RunNotFound."""
        row = yield Query(self._q["lock_run"], {"run_id": run_id})
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
        lock: RunLock,
        events: Sequence[NewEvent],
        *,
        status: RunStatus,
        wake_at: datetime | None,
        error: dict[str, Any] | None = None,
        set_error: bool = False,
        finish: bool = False,
        reopen: bool = False,
    ) -> Plan[bool]:
        """Append to a locked run nobody holds a live lease on; returns whether a client
        watches it (for a done notification)."""
        row = yield Query(
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
        )
        if row is None:  # pragma: no cover - the row lock makes this impossible
            raise ConflictError(f"run {lock.run_id!r} moved on during the change; try again")
        lock.last_seq = events[-1].seq if events else lock.last_seq
        lock.status = status
        return bool(row[0])

    def notify(self, channel: str, payload: str) -> Plan[None]:
        """pg_notify, delivered at the transaction's commit."""
        yield Query(self._q["notify"], {"channel": channel, "payload": payload}, "none")

    # -- controls ------------------------------------------------------------------------

    def control(
        self,
        run_id: str,
        kind: str,
        reason: str | None,
        now: datetime,
        *,
        raise_inactive: bool,
    ) -> Plan[None]:
        """Apply pause / resume / cancel to a run: queued for the worker that holds its
        lease, else appended to its log directly. A cancel cascades to its children."""
        lock = yield from self.lock(run_id)
        if lock.status in TERMINAL_STATUSES:
            if raise_inactive:
                raise RunNotActive(run_id, lock.status)
            return
        yield from self._apply(lock, kind, reason, now)
        if kind == "cancel":
            # The run's own cancel first, then its children's: a child that ends because
            # of this cancel reports to a parent whose log (or inbox) already holds the
            # cancel, so the parent sees Cancelled, never ChildFailed, whatever the order
            # in which the children's ends arrive.
            for child in (yield from self._active_children(run_id)):
                yield from self.control(
                    child, "cancel", f"parent {run_id} cancelled", now, raise_inactive=False
                )

    def _apply(self, lock: RunLock, kind: str, reason: str | None, now: datetime) -> Plan[None]:
        run_id = lock.run_id
        if lock.takes_messages:
            data = {"reason": reason} if kind == "cancel" else {}
            yield from self._post_control(run_id, kind, data)
            yield from self.notify(self._db.work_channel, run_id)
            return
        seq = lock.last_seq + 1
        if kind == "pause":
            if lock.status != RunStatus.PAUSED:
                yield from self.append(
                    lock,
                    [NewEvent(seq, EventType.RUN_PAUSED, {}, now)],
                    status=RunStatus.PAUSED,
                    wake_at=None,
                )
        elif kind == "resume":
            if lock.status == RunStatus.PAUSED:
                yield from self.append(
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
                watched = yield from self.append(
                    lock, [event], status=RunStatus.CANCELLED, wake_at=None, finish=True
                )
                yield from self.after_end(
                    lock.run_id,
                    lock.parent_run_id,
                    lock.parent_pos,
                    RunStatus.CANCELLED,
                    event.data,
                    watched,
                    now,
                )
            else:
                yield from self.append(
                    lock,
                    [NewEvent(seq, EventType.CANCEL_REQUESTED, {"reason": reason}, now)],
                    status=RunStatus.WAITING,
                    wake_at=now,
                )
                yield from self.notify(self._db.work_channel, run_id)
        else:  # pragma: no cover - internal misuse
            raise ValueError(f"unknown control {kind!r}")

    # -- a run's end -----------------------------------------------------------------------

    def after_end(
        self,
        run_id: str,
        parent_run_id: str | None,
        parent_pos: int | None,
        status: RunStatus,
        end_data: dict[str, Any],
        watched: bool,
        now: datetime,
    ) -> Plan[None]:
        """Side effects of a run's end, inside the transaction that ends it."""
        yield Query(self._q["waiters_clear"], {"run_id": run_id}, "none")
        for child in (yield from self._active_children(run_id)):
            yield from self.control(
                child, "cancel", f"parent {run_id} ended {status}", now, raise_inactive=False
            )
        if parent_run_id is not None and parent_pos is not None:
            yield from self._tell_parent(parent_run_id, parent_pos, run_id, status, end_data, now)
        if watched:
            yield from self.notify(self._db.done_channel, run_id)

    def _tell_parent(
        self,
        parent_run_id: str,
        pos: int,
        child_run_id: str,
        status: RunStatus,
        end_data: dict[str, Any],
        now: datetime,
    ) -> Plan[None]:
        """Tell the parent how its child ended: queued if a worker holds the parent,
        else appended to the parent's log directly."""
        etype, data = child_result(pos, child_run_id, status, end_data)
        lock = yield from self.lock(parent_run_id)
        if lock.status in TERMINAL_STATUSES:
            return
        if lock.takes_messages:
            yield from self._post_control(
                parent_run_id, "child_done", {"type": etype, "data": data}
            )
            yield from self.notify(self._db.work_channel, parent_run_id)
            return
        stopped = lock.status in (RunStatus.PAUSED, RunStatus.BLOCKED)
        yield from self.append(
            lock,
            [NewEvent(lock.last_seq + 1, etype, data, now)],
            status=lock.status if stopped else RunStatus.WAITING,
            wake_at=None if stopped else now,
        )
        if not stopped:
            yield from self.notify(self._db.work_channel, parent_run_id)

    # -- helpers ---------------------------------------------------------------------------

    def _active_children(self, run_id: str) -> Plan[list[str]]:
        rows = yield Query(self._q["active_children"], {"run_id": run_id}, "all")
        return [r[0] for r in rows]

    def _post_control(self, run_id: str, kind: str, data: dict[str, Any]) -> Plan[None]:
        yield Query(
            self._q["post_control"],
            {"run_id": run_id, "kind": kind, "data": jsonb_text(data)},
            "none",
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
