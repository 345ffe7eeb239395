"""What flows between a workflow, the engine and the worker.

- Commands: what a workflow yields (a step call, a sleep, a wait...).
- ``HistoryEvent``: one row of a run's log, and the names of the event types.
- Pending items: what the engine asks the worker to do next.
- Outcomes: how a run ended, as far as the engine can tell.

All of them are frozen dataclasses; the engine never decodes stored values itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from .errors import NonDeterminismError
from .vocabulary import TERMINAL_EVENT_TYPES, EventType

__all__ = [
    "CANCEL_REQUESTED",
    "CHILD_COMPLETED",
    "CHILD_FAILED",
    "CHILD_STARTED",
    "EVENT_RECEIVED",
    "EVENT_TYPES",
    "PATCH_MARKER",
    "RUN_BLOCKED",
    "RUN_CANCELLED",
    "RUN_COMPLETED",
    "RUN_CONTINUED",
    "RUN_FAILED",
    "RUN_PAUSED",
    "RUN_RESUMED",
    "RUN_RETRIED",
    "RUN_STARTED",
    "RUN_TIMED_OUT",
    "SIGNAL_RECEIVED",
    "STATUS_SET",
    "STEP_ATTEMPT_FAILED",
    "STEP_COMPLETED",
    "STEP_FAILED",
    "TERMINAL_EVENT_TYPES",
    "TIMER_FIRED",
    "TIMER_STARTED",
    "WAIT_STARTED",
    "WAIT_TIMED_OUT",
    "All",
    "AnyOf",
    "Blocked",
    "CancelledOutcome",
    "ChildCall",
    "Command",
    "Completed",
    "ContinueAsNew",
    "ContinuedAsNew",
    "Failed",
    "HistoryEvent",
    "Outcome",
    "Pending",
    "PendingChild",
    "PendingStep",
    "PendingTimer",
    "PendingWait",
    "Sleep",
    "StepCall",
    "TimedOut",
    "WaitEvent",
    "WaitSignal",
]


# -- event types (docs/internals.md, section 1; the names live in vocabulary.py) ------------

RUN_STARTED: Final = EventType.RUN_STARTED
STEP_COMPLETED: Final = EventType.STEP_COMPLETED
STEP_ATTEMPT_FAILED: Final = EventType.STEP_ATTEMPT_FAILED
STEP_FAILED: Final = EventType.STEP_FAILED
TIMER_STARTED: Final = EventType.TIMER_STARTED
WAIT_STARTED: Final = EventType.WAIT_STARTED
TIMER_FIRED: Final = EventType.TIMER_FIRED
SIGNAL_RECEIVED: Final = EventType.SIGNAL_RECEIVED
EVENT_RECEIVED: Final = EventType.EVENT_RECEIVED
WAIT_TIMED_OUT: Final = EventType.WAIT_TIMED_OUT
CHILD_STARTED: Final = EventType.CHILD_STARTED
CHILD_COMPLETED: Final = EventType.CHILD_COMPLETED
CHILD_FAILED: Final = EventType.CHILD_FAILED
PATCH_MARKER: Final = EventType.PATCH_MARKER
STATUS_SET: Final = EventType.STATUS_SET
CANCEL_REQUESTED: Final = EventType.CANCEL_REQUESTED
RUN_PAUSED: Final = EventType.RUN_PAUSED
RUN_RESUMED: Final = EventType.RUN_RESUMED
RUN_BLOCKED: Final = EventType.RUN_BLOCKED
RUN_RETRIED: Final = EventType.RUN_RETRIED
RUN_COMPLETED: Final = EventType.RUN_COMPLETED
RUN_FAILED: Final = EventType.RUN_FAILED
RUN_CANCELLED: Final = EventType.RUN_CANCELLED
RUN_TIMED_OUT: Final = EventType.RUN_TIMED_OUT
RUN_CONTINUED: Final = EventType.RUN_CONTINUED

EVENT_TYPES: Final = frozenset(EventType)
"""Every event type the engine understands."""


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One row of a run's log: ``seq`` (1, 2, ...), ``type``, JSON ``data``, ``created_at``."""

    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


# -- commands -----------------------------------------------------------------------------


def format_seconds(seconds: float) -> str:
    """``3600`` -> ``"3600s"``, ``0.25`` -> ``"0.25s"`` (for messages)."""
    if seconds == int(seconds) and abs(seconds) < 1e15:
        return f"{int(seconds)}s"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True)
class Command:
    """Base class of everything a workflow may yield."""

    def describe(self) -> str:
        """A short human description used in messages, e.g. ``step 'charge'``."""
        return type(self).__name__


@dataclass(frozen=True, slots=True)
class StepCall(Command):
    """Run the step ``name`` with these arguments; ``options`` is the durable layer's own."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: Any = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        return f"step {self.name!r}"


@dataclass(frozen=True, slots=True)
class Sleep(Command):
    """A durable timer: ``seconds`` from when it starts, or ``until`` an aware datetime."""

    seconds: float | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.until is None):
            raise ValueError("Sleep needs exactly one of seconds and until")

    def describe(self) -> str:
        if self.seconds is not None:
            return f"sleep({format_seconds(self.seconds)})"
        assert self.until is not None
        return f"sleep_until({self.until.isoformat()})"


@dataclass(frozen=True, slots=True)
class WaitSignal(Command):
    """Wait for the oldest unconsumed signal called ``name``, at most ``timeout`` seconds."""

    name: str
    timeout: float | None = None

    def describe(self) -> str:
        if self.timeout is None:
            return f"wait_signal({self.name!r})"
        return f"wait_signal({self.name!r}, timeout={format_seconds(self.timeout)})"


@dataclass(frozen=True, slots=True)
class WaitEvent(Command):
    """Wait for the latched event ``key``, at most ``timeout`` seconds."""

    key: str
    timeout: float | None = None

    def describe(self) -> str:
        if self.timeout is None:
            return f"wait_event({self.key!r})"
        return f"wait_event({self.key!r}, timeout={format_seconds(self.timeout)})"


@dataclass(frozen=True, slots=True)
class ChildCall(Command):
    """Start the workflow ``workflow`` as a child run and wait for its result."""

    workflow: str
    args: tuple[Any, ...] = ()

    def describe(self) -> str:
        return f"child({self.workflow!r})"


@dataclass(frozen=True, slots=True)
class All(Command):
    """Run ``commands`` concurrently; the result is the list of their results."""

    commands: tuple[Command, ...]

    def describe(self) -> str:
        return "all(" + ", ".join(_describe_any(c) for c in self.commands) + ")"


@dataclass(frozen=True, slots=True)
class AnyOf(Command):
    """Run ``commands`` concurrently; the result is ``(index, result)`` of the first to end."""

    commands: tuple[Command, ...]

    def describe(self) -> str:
        return "any(" + ", ".join(_describe_any(c) for c in self.commands) + ")"


@dataclass(frozen=True, slots=True)
class ContinueAsNew(Command):
    """End this history and start the run over with ``args`` (top level only)."""

    args: tuple[Any, ...] = ()

    def describe(self) -> str:
        return "continue_as_new(...)" if self.args else "continue_as_new()"


def _describe_any(value: object) -> str:
    return value.describe() if isinstance(value, Command) else repr(value)


# -- pending work -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingStep:
    """Step ``pos`` must run: this will be ``attempt`` (1-based), not before ``not_before``."""

    pos: int
    call: StepCall
    attempt: int
    not_before: datetime | None


@dataclass(frozen=True, slots=True)
class PendingTimer:
    """Sleep ``pos``; ``fire_at`` is None until the worker writes ``timer_started``."""

    pos: int
    seconds: float | None
    until: datetime | None
    fire_at: datetime | None


@dataclass(frozen=True, slots=True)
class PendingWait:
    """Wait ``pos`` for a ``kind`` ("signal" or "event") called ``name``.

    With a ``timeout``, ``timeout_at`` is None until the worker writes ``timer_started``.
    Without one, ``started`` is False until the worker writes ``wait_started``: the record
    that the code reached this wait, so a replay after a deploy knows that the code before
    it already ran with the old version (``ctx.patched`` answers False there).
    """

    pos: int
    kind: str
    name: str
    timeout: float | None
    timeout_at: datetime | None
    started: bool = False


@dataclass(frozen=True, slots=True)
class PendingChild:
    """Child ``pos``; ``child_run_id`` is None until the worker writes ``child_started``."""

    pos: int
    call: ChildCall
    child_run_id: str | None


Pending = PendingStep | PendingTimer | PendingWait | PendingChild
"""Any item of ``Engine.pending()``."""


# -- outcomes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Completed:
    """The workflow returned ``result``."""

    result: Any


@dataclass(frozen=True, slots=True)
class Failed:
    """The workflow raised ``error``.

    ``cause_pos`` is the position of the step whose ``StepFailed`` propagated out of the
    workflow unchanged (the very instance the engine threw), else None.
    """

    error: BaseException
    cause_pos: int | None = None


@dataclass(frozen=True, slots=True)
class CancelledOutcome:
    """``Cancelled`` propagated out of the workflow (or the run was cancelled before it began)."""

    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ContinuedAsNew:
    """The workflow yielded ``ctx.continue_as_new(*args)``."""

    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Blocked:
    """The code does not match the log; nothing more is run until a retry."""

    error: NonDeterminismError


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The log recorded ``run_timed_out``; the generator was abandoned."""


Outcome = Completed | Failed | CancelledOutcome | ContinuedAsNew | Blocked | TimedOut
"""Any value of ``Engine.outcome`` except None."""
