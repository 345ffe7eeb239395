"""Driving a held run: feed its log to the engine, then bring it forward (inbox, timers,
children, steps) writing what it leads to in as few commits as possible, until it waits,
ends, or has a step to execute. A run is driven by whichever pool thread has news for it
(a claim, a step result, a timer, a nudge) under the run's own lock."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from .. import telemetry
from .._clock import utcnow
from .._registry import StepDef
from ..replay import (
    HistoryEvent,
    PendingChild,
    PendingStep,
    PendingTimer,
    PendingWait,
    TimedOut,
)
from ..replay.vocabulary import RunStatus
from ..store import NewEvent
from ._endings import Endings
from ._inbox import Inbox
from ._recorder import Recorder
from ._state import Activation, Lost, WorkerState
from ._steps import StepRunner, step_def
from ._transact import TransactionalSteps

__all__ = ["RunDriver"]

log = logging.getLogger("durable.worker")


class RunDriver:
    """The loop between a run's engine and its log (see the module doc)."""

    def __init__(
        self,
        state: WorkerState,
        recorder: Recorder,
        inbox: Inbox,
        endings: Endings,
        steps: StepRunner,
        transactional: TransactionalSteps,
    ) -> None:
        self._state = state
        self._recorder = recorder
        self._inbox = inbox
        self._endings = endings
        self._steps = steps
        self._transactional = transactional

    def activate(self, act: Activation, history: list[HistoryEvent]) -> None:
        """A run was just claimed: replay what it has not seen yet and go on."""
        if act.claim.events is not None and act.claim.created_at and telemetry.active():
            # a run executed for the first time (its claim read its log: never started)
            waited = (utcnow() - act.claim.created_at).total_seconds()
            telemetry.record_schedule_to_start(act.claim.workflow, waited)
        with act.lock:
            try:
                if history:
                    try:
                        act.engine.feed(history, replaying=True)
                    except Exception as exc:  # a log the engine cannot read
                        self._endings.block_unreadable(act, history, exc)
                        return
                act.ready = True
            except Exception as exc:
                self._let_go(act, exc)
                return
            step = self._advance_or_let_go(act, [])
        if step is not None:
            self._execute(act, step)

    def tick(self, act: Activation) -> None:
        """Look at a held run again (a timer came due, or its inbox was nudged)."""
        with act.lock:
            act.tick_at = None
            if act.done:
                self._let_go_if_lost(act)
                return
            if not act.ready:
                # A notification (the run's own start, a signal) reached a run claimed
                # but not activated yet: the activation sees act.nudged and syncs. Driving
                # the unfed engine here would release the run with nothing to wake it.
                return
            step = self._advance_or_let_go(act, [])
        if step is not None:
            self._execute(act, step)

    def _execute(self, act: Activation, step: PendingStep | None) -> None:
        """The hot path: run a step in this thread, record its result together with what
        it leads to (one commit), and go on with the next step while there is exactly one."""
        while step is not None:
            definition = step_def(step.call)
            try:
                if telemetry.active():
                    event = self._traced(act, step, definition)
                elif definition is not None and definition.transactional:
                    # None: its result is written already, in the step's own transaction
                    event = self._transactional.run(act, step, definition)
                else:
                    event = self._steps.run(step)
            except Exception as exc:  # the step runner itself failed (user errors are events)
                with act.lock:
                    if act.done:
                        self._let_go_if_lost(act)
                    else:
                        self._let_go(act, exc)
                return
            with act.lock:
                if act.done:
                    self._let_go_if_lost(act)
                    return
                act.in_flight.discard(step.pos)
                step = self._advance_or_let_go(act, [event] if event is not None else [])

    def _traced(
        self, act: Activation, step: PendingStep, definition: StepDef | None
    ) -> NewEvent | None:
        """One attempt inside its ``step`` span, in the run's trace (telemetry on)."""
        with telemetry.step_span(
            telemetry.trace_of(act.engine),
            act.run_id,
            act.claim.workflow,
            step.call.name,
            step.attempt,
        ) as span:
            if definition is not None and definition.transactional:
                event = self._transactional.run(act, step, definition)
            else:
                event = self._steps.run(step)
            if span is not None:
                span.recorded(event)
            return event

    def _advance_or_let_go(self, act: Activation, produced: list[NewEvent]) -> PendingStep | None:
        try:
            return self._advance(act, produced)
        except Exception as exc:
            self._let_go(act, exc)
            return None

    def _let_go(self, act: Activation, exc: Exception) -> None:
        """Stop driving a run after an error (called with ``act.lock`` held). ``Lost``:
        the lease is gone or the write was handed back already. Anything else is a bug of
        the worker: say so loudly and hand the run back for later, never hold it forever."""
        if not isinstance(exc, Lost):
            log.error(
                "run %s: unexpected error while driving it; handing it back (this is a bug "
                "in pgdurable: please report it)",
                act.run_id,
                exc_info=exc,
            )
            self._state.release_later(act.run_id, act.token, self._state.write_failed(act.run_id))
        self._recorder.drop(act)

    def _let_go_if_lost(self, act: Activation) -> None:
        if act.lost and not act.in_flight:
            act.lost = False
            self._state.close_later(act.engine)

    def _advance(self, act: Activation, produced: list[NewEvent]) -> PendingStep | None:
        """Bring the run forward: ``produced`` are events this worker made (a step result)
        that are not written yet. Writes them with whatever they lead to in as few
        commits as possible, then starts the next steps. Called with ``act.lock`` held;
        returns the one step the caller should execute in its own thread, if any."""
        recorder = self._recorder
        while not act.done:
            if produced:
                recorder.feed_live(act, produced)
            engine = act.engine
            outcome = engine.outcome
            now = utcnow()
            if outcome is None and act.deadline is not None and act.deadline <= now:
                outcome = TimedOut()
            if outcome is not None:
                if self._endings.finish(act, produced, outcome):
                    produced = []  # continued as new: drive the new history
                    continue
                return None
            if act.nudged or self._inbox.needs_sync(act):
                recorder.write(act, produced, "hold", now)
                produced = []
                if self._inbox.sync(act):
                    continue
            # A paused run stops at its yield: nothing new is started (steps already running
            # finish and are recorded); signals, events and timers wait in the inbox.
            starters = [] if act.paused else self._inbox.starters(act)
            if starters:
                produced = produced + starters
                continue  # feed them (they change pending state) and look again
            pending = engine.pending()
            runnable = [
                p
                for p in pending
                if isinstance(p, PendingStep)
                and p.pos not in act.in_flight
                and (p.not_before is None or p.not_before <= now)
            ]
            if self._state.stopping.is_set() or act.paused:
                runnable = []
            if runnable or act.in_flight:
                recorder.write(act, produced, "hold", now)
                produced = []
                self._schedule_tick(act, pending)
                if len(runnable) == 1 and not act.in_flight:
                    act.in_flight.add(runnable[0].pos)
                    return runnable[0]
                for p in runnable:
                    act.in_flight.add(p.pos)
                    self._state.submit(self._execute, act, p)
                return None
            # Nothing to do now: give the run back until its next timer, retry or signal.
            status = RunStatus.PAUSED if act.paused else RunStatus.WAITING
            wake = None if act.paused else self._inbox.wake_at(act, pending)
            if status == RunStatus.WAITING and wake is None and not _reachable(pending):
                # Nothing could ever wake it: a bug of the worker. Say so, and look again.
                log.error(
                    "run %s: let go waiting with no timer, wait or child (pending %r, seq "
                    "%d); this is a bug in pgdurable: please report it. Looking at it "
                    "again in 1s.",
                    act.run_id,
                    pending,
                    act.last_seq,
                )
                wake = now + timedelta(seconds=1)
            recorder.write(act, produced, "release", now, status=status, wake_at=wake)
            recorder.drop(act, keep_engine=True)
            return None
        return None

    def _schedule_tick(self, act: Activation, pending: list[Any]) -> None:
        """A held run with steps in flight may also wait on a timer (``ctx.any(step,
        ctx.sleep(5))``): look at it again when the earliest one is due."""
        times = []
        for p in pending:
            if isinstance(p, PendingTimer) and p.fire_at is not None:
                times.append(p.fire_at)
            elif isinstance(p, PendingWait) and p.timeout_at is not None:
                times.append(p.timeout_at)
        if not times:
            return
        due = min(times)
        if act.tick_at is not None and act.tick_at <= due:
            return  # a tick is already scheduled in time
        act.tick_at = due
        delay = max((due - utcnow()).total_seconds(), 0.0) + 0.001
        timer = threading.Timer(delay, self._state.submit, (self.tick, act))
        timer.daemon = True
        timer.start()


def _reachable(pending: list[Any]) -> bool:
    """Whether a run let go without a wake time can still be woken: by a signal or an
    event (its inbox nudges it) or by a child's end."""
    return any(isinstance(p, PendingWait | PendingChild) for p in pending)
