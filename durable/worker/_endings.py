"""How a held run ends: completed, failed, cancelled, timed out, blocked, or continued as
new. A run without a parent or live children ends in the group commit; any other end is
one transaction of the store with its family effects (parent told, children cancelled)."""

from __future__ import annotations

import contextlib
import logging
import traceback
from datetime import datetime
from typing import Any

from .. import telemetry
from .._clock import new_seed, utcnow
from .._codec import Codec
from .._errors import SerializationError
from .._replayer import Replayer
from ..replay import (
    Blocked,
    CancelledOutcome,
    Completed,
    ContinuedAsNew,
    Failed,
    HistoryEvent,
    Outcome,
    TimedOut,
)
from ..replay.errors import DurableError
from ..replay.vocabulary import EventType, RunStatus
from ..store import (
    Claim,
    ConflictError,
    GroupAppender,
    LeaseStore,
    NewEvent,
    NotFinishedHere,
    RunEnd,
    StoreError,
)
from ._recorder import Recorder
from ._state import Activation, Lost, WorkerState
from ._steps import error_type

__all__ = ["Endings"]

log = logging.getLogger("durable.worker")

_End = tuple[RunStatus, EventType, dict[str, Any], dict[str, Any] | None]


class Endings:
    """Records the ends of runs (see the module doc)."""

    def __init__(
        self,
        leases: LeaseStore,
        group: GroupAppender,
        codec: Codec,
        recorder: Recorder,
        replayer: Replayer,
        state: WorkerState,
    ) -> None:
        self._leases = leases
        self._group = group
        self._codec = codec
        self._recorder = recorder
        self._replayer = replayer
        self._state = state

    def finish(self, act: Activation, produced: list[NewEvent], outcome: Outcome) -> bool:
        """Record the run's end (or its block) and let it go; for continue-as-new, start
        the new history and return True: the run goes on (drive it again)."""
        now = utcnow()
        if isinstance(outcome, Blocked):
            message = str(outcome.error)
            log.error("run %s blocked: %s", act.run_id, message)
            self._recorder.write(
                act,
                [*produced, NewEvent(0, EventType.RUN_BLOCKED, {"message": message}, now)],
                "release",
                now,
                status=RunStatus.BLOCKED,
                error={"error_type": "durable.NonDeterminismError", "message": message},
            )
            self._recorder.drop(act)
            return False
        if isinstance(outcome, ContinuedAsNew):
            try:
                args = self._codec.encode_args(outcome.args)
            except SerializationError as exc:
                return self.finish(act, produced, Failed(exc, None))
            return self._continue_as_new(act, produced, args, now)
        status, end_type, data, error = self._end_of(outcome)
        events = self._recorder.numbered(
            act,
            [*produced, *self._recorder.markers(act, now), NewEvent(0, end_type, data, now)],
        )
        if act.claim.parent_run_id is None:
            # Most runs end here: in the group commit, one statement with other runs' steps.
            try:
                self._group.append(
                    act.run_id,
                    act.token,
                    act.last_seq,
                    events,
                    act.custom_status,
                    act.set_custom,
                    finish_status=status,
                    finish_error=error,
                )
            except (NotFinishedHere, DurableError):
                pass  # the transactional path below ends it, or says what is wrong
            else:
                act.last_seq = events[-1].seq
                self._ended(act, status, error)
                self._recorder.drop(act)
                return False
        end = RunEnd(
            run_id=act.run_id,
            token=act.token,
            expected_seq=act.last_seq,
            events=events,
            status=status,
            error=error,
            custom_status=act.custom_status,
            set_custom=act.set_custom,
            parent_run_id=act.claim.parent_run_id,
            parent_pos=act.claim.parent_pos,
        )
        try:
            self._leases.end_run(end, now)
        except DurableError as exc:
            log.warning("run %s: cannot record its end (%s)", act.run_id, exc)
            if isinstance(exc, StoreError) and not isinstance(exc, ConflictError):
                # the lease is still ours: hand it back, later each time (a re-claim
                # replays to the end and records it then; no step runs again)
                delay = self._state.write_failed(act.run_id)
                self._state.release_later(act.run_id, act.token, delay)
        else:
            act.last_seq = events[-1].seq
            self._ended(act, status, error)
        self._recorder.drop(act)
        return False

    @staticmethod
    def _ended(act: Activation, status: RunStatus, error: dict[str, Any] | None) -> None:
        """The run's end is recorded, by this worker, now: its ``run`` span and metric."""
        if telemetry.active():
            started = act.engine.started
            telemetry.record_run_end(
                telemetry.trace_of(act.engine),
                act.run_id,
                act.claim.workflow,
                act.claim.created_at or (started.created_at if started is not None else None),
                str(status),
                error,
            )

    def block_unreadable(
        self, act: Activation, history: list[HistoryEvent], exc: Exception
    ) -> None:
        """The run's log cannot be replayed (an unknown event type, data that is not an
        object, a missing field): block it, naming the event, and let it go. The rest of
        the worker carries on; after a fix of the log or the code, ``retry`` continues it."""
        seq = act.engine.last_seq
        event = next((e for e in history if e.seq == seq), None)
        what = f"event seq {seq} ({event.type})" if event is not None else f"event seq {seq}"
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        message = f"run {act.run_id}: its log cannot be replayed at {what}: {detail}"
        log.error("%s", message)
        now = utcnow()
        with contextlib.suppress(Lost):  # then the lease is gone: whoever has it blocks it
            self._recorder.write(
                act,
                [NewEvent(0, EventType.RUN_BLOCKED, {"message": message}, now)],
                "release",
                now,
                status=RunStatus.BLOCKED,
                error={"error_type": "durable.CorruptLogError", "message": message},
            )
        self._recorder.drop(act)

    def _end_of(self, outcome: Outcome) -> _End:
        if isinstance(outcome, Completed):
            try:
                data = {"result": self._codec.encode(outcome.result)}
                return RunStatus.COMPLETED, EventType.RUN_COMPLETED, data, None
            except SerializationError as exc:
                err = {"error_type": "durable.SerializationError", "message": str(exc)}
                data = {**err, "traceback": "", "cause_pos": None}
                return RunStatus.FAILED, EventType.RUN_FAILED, data, err
        if isinstance(outcome, Failed):
            raised = outcome.error
            err = {
                "error_type": error_type(raised),
                "message": str(raised) or type(raised).__name__,
            }
            tb = "".join(traceback.format_exception(raised))
            data = {**err, "traceback": tb, "cause_pos": outcome.cause_pos}
            return RunStatus.FAILED, EventType.RUN_FAILED, data, err
        if isinstance(outcome, CancelledOutcome):
            return RunStatus.CANCELLED, EventType.RUN_CANCELLED, {"reason": outcome.reason}, None
        if isinstance(outcome, TimedOut):
            err = {"error_type": "durable.RunTimedOut", "message": "the workflow timeout passed"}
            return RunStatus.TIMED_OUT, EventType.RUN_TIMED_OUT, {}, err
        raise DurableError(f"unknown outcome {outcome!r}")  # pragma: no cover

    def _continue_as_new(
        self, act: Activation, produced: list[NewEvent], args: list[Any], now: datetime
    ) -> bool:
        started = {
            "workflow": act.claim.workflow,
            "args": args,
            "seed": new_seed(),
            "continued": True,
        }
        trace = telemetry.trace_of(act.engine)
        if trace is not None:
            started["trace"] = trace  # the new history stays in the starter's trace
        events = self._recorder.numbered(
            act,
            [
                *produced,
                *self._recorder.markers(act, now),
                NewEvent(0, EventType.RUN_STARTED, started, now),
            ],
        )
        start = events[-1]
        try:
            self._leases.continue_as_new(
                act.run_id,
                act.token,
                act.last_seq,
                events,
                custom_status=act.custom_status,
                set_custom=act.set_custom,
            )
        except DurableError as exc:
            log.warning("run %s: cannot continue as new (%s)", act.run_id, exc)
            self._recorder.drop(act)
            return False
        act.last_seq = start.seq
        act.history_start = start.seq
        act.set_custom = False
        act.checked_waits.clear()
        act.in_flight.clear()
        claim = act.claim
        act.claim = Claim(
            claim.run_id,
            claim.workflow,
            claim.token,
            start.seq,
            start.seq,
            claim.deadline,
            False,
            claim.parent_run_id,
            claim.parent_pos,
        )
        self._state.close_later(act.engine)
        act.engine = self._replayer.engine(claim.workflow, claim.run_id)
        act.engine.feed(
            [HistoryEvent(start.seq, start.type, start.data, start.created_at)], replaying=False
        )
        return True
