"""What each event type does to the engine (docs/internals.md, section 1).

One function per event type, ``handler(engine, event)``; ``HANDLERS`` maps type names to
them. Events for a position are first matched by ``Engine._slot`` (kind and name), which
blocks the run on a mismatch and returns None for positions that are no longer pending.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from . import _tree
from ._tree import ABANDONED, PENDING, Group
from .commands import (
    CancelledOutcome,
    Completed,
    ContinuedAsNew,
    Failed,
    HistoryEvent,
    TimedOut,
)
from .errors import Cancelled, ChildFailed, RunFailed, StepFailed, WaitTimeout

if TYPE_CHECKING:
    from .engine import Engine

_WAITS: Final = _tree.SIGNAL | _tree.EVENT


def run_started(engine: Engine, event: HistoryEvent) -> None:
    engine._start(event)


def step_completed(engine: Engine, event: HistoryEvent) -> None:
    data = event.data
    name = data["name"]
    slot = engine._slot(event, _tree.STEP, name)
    if slot is not None:
        engine._resolve(slot, True, engine._decode("step", name, data["result"]))


def step_attempt_failed(engine: Engine, event: HistoryEvent) -> None:
    data = event.data
    slot = engine._slot(event, _tree.STEP, data["name"])
    if slot is not None:
        slot.attempts += 1
        slot.not_before = _tree.parse_time(data.get("retry_at"))


def step_failed(engine: Engine, event: HistoryEvent) -> None:
    data = event.data
    slot = engine._slot(event, _tree.STEP, data["name"])
    if slot is not None:
        attempts = data.get("attempts", slot.attempts + 1)
        error_type = data.get("error_type", "")
        error = StepFailed(data["name"], error_type, data.get("message", ""), attempts)
        engine._step_failures.append((error, slot.pos))
        engine._resolve(slot, False, error)


def timer_started(engine: Engine, event: HistoryEvent) -> None:
    slot = engine._slot(event, _tree.SLEEP | _WAITS | _tree.TIMED, None)
    if slot is not None:
        slot.fire_at = _tree.parse_time(event.data["fire_at"])


def wait_started(engine: Engine, event: HistoryEvent) -> None:
    slot = engine._slot(event, _WAITS, event.data["name"])
    if slot is not None:
        slot.started = True


def timer_fired(engine: Engine, event: HistoryEvent) -> None:
    slot = engine._slot(event, _tree.SLEEP, None)
    if slot is not None:
        engine._resolve(slot, True, None)


def signal_received(engine: Engine, event: HistoryEvent) -> None:
    data = event.data
    slot = engine._slot(event, _tree.SIGNAL, data["name"])
    if slot is not None:
        engine._resolve(slot, True, engine._decode("signal", data["name"], data.get("payload")))


def event_received(engine: Engine, event: HistoryEvent) -> None:
    data = event.data
    slot = engine._slot(event, _tree.EVENT, data["key"])
    if slot is not None:
        engine._resolve(slot, True, engine._decode("event", data["key"], data.get("payload")))


def wait_timed_out(engine: Engine, event: HistoryEvent) -> None:
    slot = engine._slot(event, _WAITS | _tree.TIMED, None)
    if slot is not None:
        kind = "signal" if slot.kind & _tree.SIGNAL else "event"
        engine._resolve(slot, False, WaitTimeout(kind, slot.name or ""))


def child_started(engine: Engine, event: HistoryEvent) -> None:
    data = event.data
    slot = engine._slot(event, _tree.CHILD, data["workflow"])
    if slot is not None:
        slot.child_run_id = data["child_run_id"]


def child_completed(engine: Engine, event: HistoryEvent) -> None:
    slot = engine._slot(event, _tree.CHILD, None)
    if slot is not None:
        result = engine._decode("child", slot.name or "", event.data.get("result"))
        engine._resolve(slot, True, result)


def child_failed(engine: Engine, event: HistoryEvent) -> None:
    data = event.data
    slot = engine._slot(event, _tree.CHILD, None)
    if slot is not None:
        error = ChildFailed(
            slot.name or "",
            data.get("child_run_id") or slot.child_run_id or "",
            data.get("status", "failed"),
            data.get("error_type"),
            data.get("message"),
        )
        engine._resolve(slot, False, error)


def patch_marker(engine: Engine, event: HistoryEvent) -> None:
    engine._patches_seen.add(event.data["patch_id"])


def ignored(engine: Engine, event: HistoryEvent) -> None:
    pass


def cancel_requested(engine: Engine, event: HistoryEvent) -> None:
    reason = event.data.get("reason")
    if engine._gen is None:
        if engine._ctx is None and engine._outcome is None:
            engine._finish(CancelledOutcome(reason))  # cancelled before it started
        return  # the code has already finished: nothing left to cancel
    for slot in engine._waiting:
        if slot.state == PENDING:
            slot.state = ABANDONED
    top = engine._top
    if isinstance(top, Group) and not top.done:
        top.done = True
        _tree.abandon(top, None)
    engine._top = None
    engine._resume(False, Cancelled(reason))


def run_completed(engine: Engine, event: HistoryEvent) -> None:
    engine._check_terminal(event, Completed)


def run_failed(engine: Engine, event: HistoryEvent) -> None:
    if isinstance(engine._outcome, Completed | ContinuedAsNew):
        # The code finished but its result could not be recorded (e.g. the codec
        # refused it): the run failed outside the code.
        data = event.data
        error = RunFailed(engine._run_id, data.get("error_type", ""), data.get("message", ""))
        engine._finish(Failed(error, None))
        return
    engine._check_terminal(event, Failed)


def run_cancelled(engine: Engine, event: HistoryEvent) -> None:
    engine._check_terminal(event, CancelledOutcome)


def run_continued(engine: Engine, event: HistoryEvent) -> None:
    engine._check_terminal(event, ContinuedAsNew)


def run_timed_out(engine: Engine, event: HistoryEvent) -> None:
    engine.close()
    engine._finish(TimedOut())
    engine._stopped = True


HANDLERS: Final[dict[str, Callable[[Engine, HistoryEvent], None]]] = {
    "run_started": run_started,
    "step_completed": step_completed,
    "step_attempt_failed": step_attempt_failed,
    "step_failed": step_failed,
    "timer_started": timer_started,
    "timer_fired": timer_fired,
    "wait_started": wait_started,
    "signal_received": signal_received,
    "event_received": event_received,
    "wait_timed_out": wait_timed_out,
    "child_started": child_started,
    "child_completed": child_completed,
    "child_failed": child_failed,
    "patch_marker": patch_marker,
    "status_set": ignored,
    "cancel_requested": cancel_requested,
    "run_paused": ignored,
    "run_resumed": ignored,
    "run_blocked": ignored,
    "run_retried": ignored,
    "run_completed": run_completed,
    "run_failed": run_failed,
    "run_cancelled": run_cancelled,
    "run_continued": run_continued,
    "run_timed_out": run_timed_out,
}
