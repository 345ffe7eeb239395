"""The words of the log and of its projection: event types and run statuses.

No logic lives here, only names. The engine interprets event types; the store writes them
and keeps the ``runs`` projection whose ``status`` is a :class:`RunStatus`. Both import
this module (the store may import nothing else of the engine but its errors), and a test
checks that the SQL's ``CHECK`` and ``IN (...)`` lists name exactly these values.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "ACTIVE_STATUSES",
    "CLAIMABLE_STATUSES",
    "TERMINAL_EVENT_TYPES",
    "TERMINAL_STATUSES",
    "EventType",
    "RunStatus",
]


class EventType(enum.StrEnum):
    """Every type of event a run's log may hold (docs/internals.md, section 1)."""

    RUN_STARTED = "run_started"
    STEP_COMPLETED = "step_completed"
    STEP_ATTEMPT_FAILED = "step_attempt_failed"
    STEP_FAILED = "step_failed"
    TIMER_STARTED = "timer_started"
    WAIT_STARTED = "wait_started"
    TIMER_FIRED = "timer_fired"
    SIGNAL_RECEIVED = "signal_received"
    EVENT_RECEIVED = "event_received"
    WAIT_TIMED_OUT = "wait_timed_out"
    CHILD_STARTED = "child_started"
    CHILD_COMPLETED = "child_completed"
    CHILD_FAILED = "child_failed"
    PATCH_MARKER = "patch_marker"
    STATUS_SET = "status_set"
    CANCEL_REQUESTED = "cancel_requested"
    RUN_PAUSED = "run_paused"
    RUN_RESUMED = "run_resumed"
    RUN_BLOCKED = "run_blocked"
    RUN_RETRIED = "run_retried"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"
    RUN_TIMED_OUT = "run_timed_out"
    RUN_CONTINUED = "run_continued"


class RunStatus(enum.StrEnum):
    """The status of a run in the ``runs`` projection."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    BLOCKED = "blocked"


TERMINAL_EVENT_TYPES: Final = frozenset(
    {
        EventType.RUN_COMPLETED,
        EventType.RUN_FAILED,
        EventType.RUN_CANCELLED,
        EventType.RUN_TIMED_OUT,
        EventType.RUN_CONTINUED,
    }
)
"""Event types that end a history."""

TERMINAL_STATUSES: Final = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT}
)
"""Statuses of runs that have ended for good."""

ACTIVE_STATUSES: Final = frozenset(set(RunStatus) - TERMINAL_STATUSES)
"""Statuses of runs that have not ended (pending, running, waiting, paused, blocked)."""

CLAIMABLE_STATUSES: Final = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING})
"""Statuses a worker may claim a run in (when its ``wake_at`` has come)."""
