"""The ends of runs: completed, failed, cancelled, timed out, blocked, or continued as
new, each recorded with its side effects (parent told, children cancelled, waiters
notified) in one transaction, or in the group commit when there are none."""

from __future__ import annotations

import logging
import traceback
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from ._handle import new_seed
from ._runstate import Activation, WorkerBase, _error_type, _now
from .replay import (
    Blocked,
    CancelledOutcome,
    Completed,
    ContinuedAsNew,
    Failed,
    HistoryEvent,
    TimedOut,
)
from .replay.errors import (
    DatabaseUnavailable,
    DurableError,
    SerializationError,
)
from .store import Claim, NewEvent
from .store._group import NotFinishedHere

if TYPE_CHECKING:
    pass

log = logging.getLogger("durable.worker")


class EndingMixin(WorkerBase):
    """Recording how a run ends."""

    # -- ending --------------------------------------------------------------------

    def _finish(self, act: Activation, produced: list[NewEvent], outcome: Any) -> None:
        """Record the run's end (or its block, or its new history) and let it go."""
        app = self.app
        now = _now()
        if isinstance(outcome, Blocked):
            message = str(outcome.error)
            log.error("run %s blocked: %s", act.run_id, message)
            self._write(
                act,
                [*produced, NewEvent(0, "run_blocked", {"message": message}, now)],
                "release",
                status="blocked",
                error={"error_type": "durable.NonDeterminismError", "message": message},
            )
            self._drop(act, release=False)
            return
        if isinstance(outcome, ContinuedAsNew):
            self._continue_as_new(act, produced, outcome, now)
            return
        status, end_type, data, error = self._end_of(outcome)
        events = self._numbered(
            act, [*produced, *self._markers(act), NewEvent(0, end_type, data, now)]
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
                self._drop(act, release=False)
                return

        def body(conn: psycopg.Connection[Any]) -> None:
            result = app.store.append(
                run_id=act.run_id,
                token=act.token,
                expected_seq=act.last_seq,
                events=events,
                mode="finish",
                status=status,
                lease_seconds=self.lease_seconds,
                custom_status=act.custom_status,
                set_custom=act.set_custom,
                error=error,
                set_error=True,
                conn=conn,
            )
            app._after_finish(
                conn,
                act.run_id,
                act.claim.parent_run_id,
                act.claim.parent_pos,
                status,
                data,
                result.watched,
                now,
            )

        try:
            app.store.run_in_tx(body)
        except DurableError as exc:
            log.warning("run %s: cannot record its end (%s)", act.run_id, exc)
            if isinstance(exc, DatabaseUnavailable):
                with self._state_lock:
                    self._to_release.append((act.run_id, act.token))
            self._drop(act, release=False)
            return
        act.last_seq = events[-1].seq
        self._drop(act, release=False)

    def _end_of(self, outcome: Any) -> tuple[str, str, dict[str, Any], dict[str, Any] | None]:
        if isinstance(outcome, Completed):
            try:
                return (
                    "completed",
                    "run_completed",
                    {"result": self.app.codec.encode(outcome.result)},
                    None,
                )
            except SerializationError as exc:
                err = {"error_type": "durable.SerializationError", "message": str(exc)}
                return "failed", "run_failed", {**err, "traceback": "", "cause_pos": None}, err
        if isinstance(outcome, Failed):
            error = outcome.error
            err = {"error_type": _error_type(error), "message": str(error) or type(error).__name__}
            tb = "".join(traceback.format_exception(error))
            return (
                "failed",
                "run_failed",
                {**err, "traceback": tb, "cause_pos": outcome.cause_pos},
                err,
            )
        if isinstance(outcome, CancelledOutcome):
            return "cancelled", "run_cancelled", {"reason": outcome.reason}, None
        if isinstance(outcome, TimedOut):
            err = {"error_type": "durable.RunTimedOut", "message": "the workflow timeout passed"}
            return "timed_out", "run_timed_out", {}, err
        raise DurableError(f"unknown outcome {outcome!r}")  # pragma: no cover

    def _continue_as_new(
        self, act: Activation, produced: list[NewEvent], outcome: ContinuedAsNew, now: datetime
    ) -> None:
        app = self.app
        try:
            args = app.codec.encode_args(outcome.args)
        except SerializationError as exc:
            self._finish(act, produced, Failed(exc, None))
            return
        events = self._numbered(
            act,
            [
                *produced,
                *self._markers(act),
                NewEvent(
                    0,
                    "run_started",
                    {
                        "workflow": act.claim.workflow,
                        "args": args,
                        "seed": new_seed(),
                        "continued": True,
                    },
                    now,
                ),
            ],
        )
        start = events[-1]

        def body(conn: psycopg.Connection[Any]) -> None:
            app.store.append(
                run_id=act.run_id,
                token=act.token,
                expected_seq=act.last_seq,
                events=events,
                mode="hold",
                status="running",
                lease_seconds=self.lease_seconds,
                custom_status=act.custom_status,
                set_custom=act.set_custom,
                conn=conn,
            )
            conn.execute(
                app.store.q("restart_history"),
                {"run_id": act.run_id, "history_start": start.seq, "token": act.token},
            )
            conn.execute(app.store.q("delete_history"), {"run_id": act.run_id, "before": start.seq})

        try:
            app.store.run_in_tx(body)
        except DurableError as exc:
            log.warning("run %s: cannot continue as new (%s)", act.run_id, exc)
            self._drop(act, release=False)
            return
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
        act.engine = self._new_engine(act.claim)
        act.engine.feed(
            [HistoryEvent(start.seq, start.type, start.data, start.created_at)], replaying=False
        )
        step = self._advance(act, [])
        if step is not None:
            # run it from a pool thread: the caller holds act.lock
            self._submit(self._run_step_async, act, step)
