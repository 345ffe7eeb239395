"""A held run's inbox and timers: moving signals, latched events, control messages and
due timers into its log (the store's inbox sync), recording the start of timers, waits
and children, and the time to wake a run that is let go."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .. import telemetry
from .._clock import utcnow
from .._codec import Codec
from .._errors import SerializationError
from ..client import RunCreator, child_run_id
from ..replay import HistoryEvent, PendingChild, PendingStep, PendingTimer, PendingWait
from ..replay.errors import DurableError
from ..replay.vocabulary import EventType, RunStatus
from ..store import Created, DueTimer, InboxWait, LeaseStore, NewEvent, Unit
from ..telemetry import trace_of
from ._state import Activation, Lost, WorkerState

__all__ = ["Inbox"]

log = logging.getLogger("durable.worker")


class Inbox:
    """The inbox side of driving a run (see the module doc)."""

    def __init__(
        self,
        leases: LeaseStore,
        creator: RunCreator,
        create: Callable[[Unit[Created]], Created],
        codec: Codec,
        state: WorkerState,
    ) -> None:
        self._leases = leases
        self._creator = creator
        self._create = create
        self._codec = codec
        self._state = state

    def needs_sync(self, act: Activation) -> bool:
        """Whether the run's current yield may find something in its inbox now."""
        if act.paused:
            return False  # a paused run takes only control messages (resume, cancel)
        now = utcnow()
        for p in act.engine.pending():
            if isinstance(p, PendingWait):
                if p.pos not in act.checked_waits:
                    return True
                if p.timeout_at is not None and p.timeout_at <= now:
                    return True
            elif isinstance(p, PendingTimer) and p.fire_at is not None and p.fire_at <= now:
                return True
        return False

    def sync(self, act: Activation) -> bool:
        """Move what the run's inbox holds (controls first, then one signal, event or due
        timer) into the log in one transaction. Returns True if anything was recorded."""
        now = utcnow()
        pending = act.engine.pending()
        waits = [
            InboxWait(
                p.pos,
                p.kind,
                p.name,
                check_latched=p.pos not in act.checked_waits or act.nudged,
            )
            for p in pending
            if isinstance(p, PendingWait)
        ]
        due: list[DueTimer] = []
        for p in pending:
            if isinstance(p, PendingTimer) and p.fire_at is not None and p.fire_at <= now:
                due.append(DueTimer(p.fire_at, p.pos, EventType.TIMER_FIRED))
            elif isinstance(p, PendingWait) and p.timeout_at is not None and p.timeout_at <= now:
                due.append(DueTimer(p.timeout_at, p.pos, EventType.WAIT_TIMED_OUT))
        try:
            result = self._leases.sync_inbox(
                act.run_id,
                act.token,
                act.last_seq,
                waits=waits,
                due=due,
                paused=act.paused,
                now=now,
            )
        except DurableError as exc:
            log.warning("run %s: inbox sync failed (%s)", act.run_id, exc)
            raise Lost from exc
        act.checked_waits.update(result.checked)
        act.nudged = result.more  # one item per transaction: sync again if more is left
        if not result.events:
            return False
        for event in result.events:
            if event.type == EventType.RUN_PAUSED:
                act.paused = True
            elif event.type in (EventType.RUN_RESUMED, EventType.CANCEL_REQUESTED):
                act.paused = False
        act.last_seq = result.events[-1].seq
        act.engine.feed(
            [HistoryEvent(e.seq, e.type, e.data, e.created_at) for e in result.events],
            replaying=False,
        )
        return True

    def starters(self, act: Activation) -> list[NewEvent]:
        """timer_started / wait_started / child_started events for commands that need
        them (a child is created now, idempotently on its deterministic id)."""
        now = utcnow()
        out: list[NewEvent] = []
        for p in act.engine.pending():
            if isinstance(p, PendingTimer) and p.fire_at is None:
                fire = p.until if p.until is not None else now + timedelta(seconds=p.seconds or 0.0)
                data = {"pos": p.pos, "fire_at": fire.isoformat()}
                out.append(NewEvent(0, EventType.TIMER_STARTED, data, now))
            elif isinstance(p, PendingWait) and p.timeout is not None and p.timeout_at is None:
                fire = now + timedelta(seconds=p.timeout)
                # kind and name say which wait this timeout is for (durable show, the
                # dashboard); the engine matches the timer by position only
                data = {"pos": p.pos, "fire_at": fire.isoformat(), "kind": p.kind, "name": p.name}
                out.append(NewEvent(0, EventType.TIMER_STARTED, data, now))
            elif isinstance(p, PendingWait) and p.timeout is None and not p.started:
                data = {"pos": p.pos, "kind": p.kind, "name": p.name}
                out.append(NewEvent(0, EventType.WAIT_STARTED, data, now))
            elif isinstance(p, PendingChild) and p.child_run_id is None:
                out.append(self._start_child(act, p, now))
        return out

    def _start_child(self, act: Activation, p: PendingChild, now: datetime) -> NewEvent:
        workflow = p.call.workflow
        try:
            args = self._codec.encode_args(p.call.args)
        except SerializationError as exc:
            data = {
                "pos": p.pos,
                "child_run_id": child_run_id(act.run_id, act.history_start, p.pos),
                "status": str(RunStatus.FAILED),
                "error_type": "durable.SerializationError",
                "message": str(exc),
            }
            return NewEvent(0, EventType.CHILD_FAILED, data, now)
        with telemetry.run_context(trace_of(act.engine)):  # the child joins the trace
            unit = self._creator.child(act.run_id, act.history_start, p.pos, workflow, args, now)
        created = self._create(unit)
        data = {"pos": p.pos, "workflow": workflow, "child_run_id": created.run_id}
        return NewEvent(0, EventType.CHILD_STARTED, data, now)

    def wake_at(self, act: Activation, pending: list[Any]) -> datetime | None:
        """When a run let go must be looked at again: its next timer, retry or deadline."""
        times: list[datetime] = []
        for p in pending:
            if isinstance(p, PendingTimer) and p.fire_at is not None:
                times.append(p.fire_at)
            elif isinstance(p, PendingWait) and p.timeout_at is not None:
                times.append(p.timeout_at)
            elif isinstance(p, PendingStep):
                times.append(p.not_before or utcnow())
        if act.deadline is not None:
            times.append(act.deadline)
        if self._state.stopping.is_set():
            times.append(utcnow())
        wake = min(times) if times else None
        self._state.note_wake(wake)
        return wake
