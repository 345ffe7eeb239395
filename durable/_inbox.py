"""The worker's inbox and timers: moving signals, latched events, control messages and
due timers into a run's log, and recording the start of timers, waits and children."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from ._handle import new_seed
from ._runstate import Activation, WorkerBase, _Lost, _now
from .replay import (
    HistoryEvent,
    PendingChild,
    PendingStep,
    PendingTimer,
    PendingWait,
)
from .replay.errors import (
    DurableError,
    SerializationError,
)
from .store import NewEvent

if TYPE_CHECKING:
    pass

log = logging.getLogger("durable.worker")


class InboxMixin(WorkerBase):
    """Inbox, timers and starters of the runs a worker holds."""

    # -- inbox and timers ----------------------------------------------------------

    def _needs_sync(self, act: Activation) -> bool:
        if act.paused:
            return False  # a paused run takes only control messages (resume, cancel)
        now = _now()
        for p in act.engine.pending():
            if isinstance(p, PendingWait):
                if p.pos not in act.checked_waits:
                    return True
                if p.timeout_at is not None and p.timeout_at <= now:
                    return True
            elif isinstance(p, PendingTimer) and p.fire_at is not None and p.fire_at <= now:
                return True
        return False

    def _sync(self, act: Activation) -> bool:
        """Move what the run's inbox holds (controls first, then one signal, event or due
        timer) into the log in one transaction. Returns True if anything was recorded."""
        app = self.app
        store = app.store
        now = _now()
        events: list[NewEvent] = []
        left = [False]

        def body(conn: psycopg.Connection[Any]) -> None:
            events.clear()
            row = conn.execute(
                store.q("lock_leased_run"), {"run_id": act.run_id, "token": act.token}
            ).fetchone()
            if row is None:
                raise _Lost()
            for control in store.drain_controls(conn, act.run_id):
                events.append(self._control_event(act, control, now))
            if not events and not act.paused:
                item = self._one_inbox_item(act, conn, now)
                if item is not None:
                    events.append(item)
            waits = [
                p.name
                for p in act.engine.pending()
                if isinstance(p, PendingWait) and p.kind == "signal"
            ]
            row = conn.execute(
                store.q("inbox_has_more"), {"run_id": act.run_id, "names": waits}
            ).fetchone()
            more = bool(row and row[0])
            left[0] = more
            numbered = self._numbered(act, events)
            store.append(
                run_id=act.run_id,
                token=act.token,
                expected_seq=act.last_seq,
                events=numbered,
                mode="hold",
                status="running",
                lease_seconds=self.lease_seconds,
                conn=conn,
            )
            if not more:
                conn.execute(store.q("clear_nudge"), {"run_id": act.run_id})
            events[:] = numbered

        try:
            store.run_in_tx(body)
        except _Lost:
            raise
        except DurableError as exc:
            log.warning("run %s: inbox sync failed (%s)", act.run_id, exc)
            raise _Lost from exc
        # One item per transaction; sync again only if the inbox still holds something.
        act.nudged = left[0]
        if not events:
            return False
        act.last_seq = events[-1].seq
        act.engine.feed(
            [HistoryEvent(e.seq, e.type, e.data, e.created_at) for e in events], replaying=False
        )
        return True

    def _control_event(self, act: Activation, control: dict[str, Any], now: datetime) -> NewEvent:
        kind = control["kind"]
        data = control["data"] or {}
        if kind == "pause":
            act.paused = True
            return NewEvent(0, "run_paused", {}, now)
        if kind == "resume":
            act.paused = False
            return NewEvent(0, "run_resumed", {}, now)
        if kind == "cancel":
            act.paused = False
            return NewEvent(0, "cancel_requested", {"reason": data.get("reason")}, now)
        if kind == "child_done":
            return NewEvent(0, data["type"], data["data"], now)
        raise DurableError(f"unknown control message {kind!r}")  # pragma: no cover

    def _one_inbox_item(
        self, act: Activation, conn: psycopg.Connection[Any], now: datetime
    ) -> NewEvent | None:
        store = self.app.store
        pending = act.engine.pending()
        waits = sorted((p for p in pending if isinstance(p, PendingWait)), key=lambda p: p.pos)
        for w in waits:
            first_check = w.pos not in act.checked_waits
            act.checked_waits.add(w.pos)
            if w.kind == "signal":
                got = store.pop_signals(conn, act.run_id, w.name, 1)
                if got:
                    return NewEvent(
                        0,
                        "signal_received",
                        {"pos": w.pos, "name": w.name, "payload": got[0]["payload"]},
                        now,
                    )
            elif first_check or act.nudged:
                found = store.latched_or_wait(conn, act.run_id, [w.name])
                if w.name in found:
                    return NewEvent(
                        0,
                        "event_received",
                        {"pos": w.pos, "key": w.name, "payload": found[w.name]},
                        now,
                    )
        due: list[tuple[datetime, int, str]] = []
        for p in pending:
            if isinstance(p, PendingTimer) and p.fire_at is not None and p.fire_at <= now:
                due.append((p.fire_at, p.pos, "timer_fired"))
            elif isinstance(p, PendingWait) and p.timeout_at is not None and p.timeout_at <= now:
                due.append((p.timeout_at, p.pos, "wait_timed_out"))
        if due:
            due.sort()
            _, pos, type_ = due[0]
            return NewEvent(0, type_, {"pos": pos}, now)
        return None

    def _starters(self, act: Activation) -> list[NewEvent]:
        """timer_started / child_started events for commands that need them."""
        now = _now()
        out: list[NewEvent] = []
        for p in act.engine.pending():
            if isinstance(p, PendingTimer) and p.fire_at is None:
                fire = p.until if p.until is not None else now + timedelta(seconds=p.seconds or 0.0)
                out.append(
                    NewEvent(0, "timer_started", {"pos": p.pos, "fire_at": fire.isoformat()}, now)
                )
            elif isinstance(p, PendingWait) and p.timeout is not None and p.timeout_at is None:
                fire = now + timedelta(seconds=p.timeout)
                out.append(
                    NewEvent(0, "timer_started", {"pos": p.pos, "fire_at": fire.isoformat()}, now)
                )
            elif isinstance(p, PendingWait) and p.timeout is None and not p.started:
                data = {"pos": p.pos, "kind": p.kind, "name": p.name}
                out.append(NewEvent(0, "wait_started", data, now))
            elif isinstance(p, PendingChild) and p.child_run_id is None:
                out.append(self._start_child(act, p, now))
        return out

    def _start_child(self, act: Activation, p: PendingChild, now: datetime) -> NewEvent:
        """Create the child run now (idempotent on its deterministic id) and describe it."""
        app = self.app
        child_id = (
            f"{act.run_id}:{p.pos}"
            if act.history_start == 1
            else (f"{act.run_id}:{act.history_start}:{p.pos}")
        )
        workflow = p.call.workflow
        try:
            args = app.codec.encode_args(p.call.args)
        except SerializationError as exc:
            return NewEvent(
                0,
                "child_failed",
                {
                    "pos": p.pos,
                    "child_run_id": child_id,
                    "status": "failed",
                    "error_type": "durable.SerializationError",
                    "message": str(exc),
                },
                now,
            )
        wf = app.workflows.get(workflow)
        deadline = now + timedelta(seconds=wf.timeout) if wf and wf.timeout else None
        app.store.create_run(
            run_id=child_id,
            workflow=workflow,
            events=[
                NewEvent(
                    1, "run_started", {"workflow": workflow, "args": args, "seed": new_seed()}, now
                )
            ],
            now=now,
            wake_at=now,
            deadline=deadline,
            parent_run_id=act.run_id,
            parent_pos=p.pos,
        )
        return NewEvent(
            0, "child_started", {"pos": p.pos, "workflow": workflow, "child_run_id": child_id}, now
        )

    def _wake_at(self, act: Activation, pending: list[Any]) -> datetime | None:
        times: list[datetime] = []
        for p in pending:
            if isinstance(p, PendingTimer) and p.fire_at is not None:
                times.append(p.fire_at)
            elif isinstance(p, PendingWait) and p.timeout_at is not None:
                times.append(p.timeout_at)
            elif isinstance(p, PendingStep):
                times.append(p.not_before or _now())
        if act.claim.deadline is not None:
            times.append(act.claim.deadline)
        if self._stopping.is_set():
            times.append(_now())
        wake = min(times) if times else None
        self._note_wake(wake)
        return wake
