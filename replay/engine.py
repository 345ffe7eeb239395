"""``Engine``: replays a run's log into its workflow generator and says what to do next.

The engine is sans-I/O: the worker feeds it events (``feed``) and reads back the pending
work (``pending``), the markers to record (``take_markers``) and the outcome. Each event
is matched to the command the code yielded at the event's position; replay is one pass
over the log, and only the current yield's commands are kept as objects.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from types import CodeType, GeneratorType
from typing import Any, Final

from . import _messages, _tree
from ._handlers import HANDLERS
from ._tree import PENDING, Group, Slot
from .commands import (
    All,
    AnyOf,
    Blocked,
    CancelledOutcome,
    ChildCall,
    Command,
    Completed,
    ContinueAsNew,
    ContinuedAsNew,
    Failed,
    HistoryEvent,
    Outcome,
    Pending,
    PendingChild,
    PendingStep,
    PendingTimer,
    PendingWait,
    Sleep,
    StepCall,
    WaitEvent,
    WaitSignal,
)
from .context import Context, _set_current
from .errors import (
    Cancelled,
    NonDeterminismError,
    StepFailed,
    UnyieldedCommandError,
)

__all__ = ["Decode", "Engine", "WorkflowFunction"]

WorkflowFunction = Callable[..., Any]
"""A generator function ``fn(ctx, *args)``."""

Decode = Callable[[str, str, Any], Any]
"""``decode(kind, name, raw)``: turns a stored value back into a Python value."""

# Events the code neither consumes nor produces: they do not make the code that ran
# before them "replayed" (see ``Engine.feed``).
_BOOKKEEPING: Final = frozenset({"run_paused", "run_resumed", "run_blocked", "run_retried"})

_WAITS: Final = _tree.SIGNAL | _tree.EVENT
_EMPTY: tuple[Slot, ...] = ()


class Engine:
    """Replays one history of one run of the workflow ``fn``.

    ``decode(kind, name, raw)`` converts stored values: ``kind`` is ``"args"`` (with the
    workflow name; returns the argument tuple), ``"step"`` (the step name), ``"signal"``
    (the signal name), ``"event"`` (the key) or ``"child"`` (the child workflow's name).
    """

    def __init__(self, fn: WorkflowFunction, *, workflow: str, run_id: str, decode: Decode) -> None:
        self._fn = fn
        self._workflow = workflow
        self._run_id = run_id
        self._decode = decode
        self._ctx: Context | None = None
        self._gen: GeneratorType[Any, Any, Any] | None = None
        self._outcome: Outcome | None = None
        self._stopped = False  # blocked or timed out: events are no longer interpreted
        self._replaying = False
        # What is kept of every position (1-based, so index pos - 1):
        self._kinds: list[int] = []
        self._names: list[str | None] = []
        self._codes: list[CodeType | None] = []
        self._lines: list[int] = []
        # The current yield: its top node and its slots (consecutive positions).
        self._top: Slot | Group | None = None
        self._top_cmd: Command | None = None
        self._waiting: tuple[Slot, ...] = _EMPTY
        self._last_seq = 0
        self._now: datetime | None = None
        self._started: HistoryEvent | None = None
        self._patches_seen: set[str] = set()
        self._step_failures: list[tuple[StepFailed, int]] = []

    # -- public surface ---------------------------------------------------------------------

    @property
    def workflow(self) -> str:
        """The workflow's name."""
        return self._workflow

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._run_id

    @property
    def outcome(self) -> Outcome | None:
        """None while the run lives, else how it ended (or ``Blocked``)."""
        return self._outcome

    @property
    def last_seq(self) -> int:
        """The seq of the last event fed (0 before any)."""
        return self._last_seq

    @property
    def started(self) -> HistoryEvent | None:
        """The ``run_started`` event of the current history (None before it is fed)."""
        return self._started

    @property
    def is_replaying(self) -> bool:
        """True while the engine feeds an event that more recorded events follow."""
        return self._replaying

    @property
    def now(self) -> datetime | None:
        """The ``created_at`` of the latest event fed (what ``ctx.now()`` returns)."""
        return _tree.parse_time(self._now)

    def pending(self) -> list[Pending]:
        """What the run waits for, in position order: the work for the worker."""
        items: list[Pending] = []
        for slot in self._waiting:
            if slot.state != PENDING:
                continue
            cmd = slot.cmd
            if isinstance(cmd, StepCall):
                items.append(PendingStep(slot.pos, cmd, slot.attempts + 1, slot.not_before))
            elif isinstance(cmd, Sleep):
                items.append(PendingTimer(slot.pos, cmd.seconds, cmd.until, slot.fire_at))
            elif isinstance(cmd, WaitSignal):
                items.append(
                    PendingWait(
                        slot.pos, "signal", cmd.name, cmd.timeout, slot.fire_at, slot.started
                    )
                )
            elif isinstance(cmd, WaitEvent):
                items.append(
                    PendingWait(slot.pos, "event", cmd.key, cmd.timeout, slot.fire_at, slot.started)
                )
            elif isinstance(cmd, ChildCall):
                items.append(PendingChild(slot.pos, cmd, slot.child_run_id))
        return items

    def take_markers(self) -> list[tuple[str, dict[str, Any]]]:
        """The ``patch_marker`` / ``status_set`` events live code produced since the last call.

        ``status_set`` carries the Python value; the durable layer encodes it.
        """
        ctx = self._ctx
        if ctx is None or not ctx._markers:
            return []
        markers = ctx._markers
        ctx._markers = []
        return markers

    def feed(self, events: Sequence[HistoryEvent], *, replaying: bool) -> None:
        """Apply ``events`` (a loaded log, or only the newer events), in order.

        ``replaying`` is True for events read from the database: the code they resume is
        replayed (``ctx.is_replaying``, silent logger, no markers), except the code resumed
        by the last event that more than bookkeeping (paused, resumed, blocked, retried)
        follows, which is live. ``run_retried`` voids seqs of the same batch; voiding an
        event fed in an earlier batch is a ``ValueError`` (replay from scratch after a retry).
        """
        if not events:
            return
        voids = self._prescan(events)
        split = self._live_from(events, voids) if replaying else 0
        previous = _set_current(self._ctx)
        try:
            if split:
                self._set_replaying(True)
                self._consume(events, 0, split, voids)
            self._set_replaying(False)
            self._consume(events, split, len(events), voids)
        finally:
            _set_current(previous)

    def close(self) -> None:
        """Abandon the generator, running its ``finally`` blocks as replayed code.

        Step calls made there return commands instead of running, and nothing is recorded.
        Called when the run ends blocked, timed out or continued as new, and when the
        engine is garbage collected (e.g. evicted from the worker's cache).
        """
        gen = self._gen
        self._gen = None
        self._waiting = _EMPTY
        self._top = None
        ctx = self._ctx
        if gen is None or gen.gi_frame is None or ctx is None:
            return
        previous = _set_current(ctx)
        was_replaying = ctx._replaying
        ctx._replaying = True
        try:
            gen.close()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # a finally that yields or raises: nothing to do about it
            pass
        finally:
            ctx._replaying = was_replaying
            ctx._unyielded.clear()
            _set_current(previous)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return (
            f"<Engine workflow={self._workflow!r} run_id={self._run_id!r} "
            f"last_seq={self._last_seq} outcome={self._outcome!r}>"
        )

    # -- feeding ----------------------------------------------------------------------------

    def _prescan(self, events: Sequence[HistoryEvent]) -> set[int] | None:
        """Collect the batch's voids and patch markers before any of its code runs."""
        voids: set[int] | None = None
        markers: list[HistoryEvent] = []
        for event in events:
            kind = event.type
            if kind == "run_retried":
                listed = event.data.get("voids") or ()
                if listed:
                    voids = set(listed) if voids is None else voids | set(listed)
            elif kind == "patch_marker":
                markers.append(event)
        if voids is not None:
            early = sorted(seq for seq in voids if seq <= self._last_seq)
            if early:
                raise ValueError(
                    f"run_retried voids seqs {early} fed in an earlier batch; "
                    "replay the run from scratch after a retry"
                )
        for event in markers:
            if voids is None or event.seq not in voids:
                self._patches_seen.add(event.data["patch_id"])
        return voids

    @staticmethod
    def _live_from(events: Sequence[HistoryEvent], voids: set[int] | None) -> int:
        """Index of the last event that is not bookkeeping: from there on the code is live."""
        index = len(events) - 1
        while index > 0:
            event = events[index]
            if event.type in _BOOKKEEPING or (voids is not None and event.seq in voids):
                index -= 1
            else:
                break
        return index

    def _set_replaying(self, replaying: bool) -> None:
        self._replaying = replaying
        if self._ctx is not None:
            self._ctx._replaying = replaying

    def _consume(
        self, events: Sequence[HistoryEvent], start: int, stop: int, voids: set[int] | None
    ) -> None:
        handlers = HANDLERS
        for index in range(start, stop):
            event = events[index]
            seq = event.seq
            if seq <= self._last_seq:
                raise ValueError(f"event seq {seq} fed after seq {self._last_seq}")
            self._last_seq = seq
            if voids is not None and seq in voids:
                continue
            self._now = event.created_at
            if self._stopped:
                continue
            handler = handlers.get(event.type)
            if handler is None:
                raise ValueError(f"unknown event type {event.type!r} (seq {seq})")
            handler(self, event)

    # -- running the generator --------------------------------------------------------------

    def _start(self, event: HistoryEvent) -> None:
        if self._ctx is not None:
            raise ValueError(f"run_started fed twice (seq {event.seq})")
        self._started = event
        data = event.data
        tick = data.get("scheduled_at")
        ctx = Context(
            run_id=self._run_id,
            workflow=self._workflow,
            seed=int(data["seed"]),
            scheduled_at=datetime.fromisoformat(tick) if tick else None,
        )
        ctx._patches_seen = self._patches_seen
        ctx._replaying = self._replaying
        ctx._now = self._now
        self._ctx = ctx
        _set_current(ctx)
        if self._outcome is not None:  # cancelled before it started
            return
        try:
            args = tuple(self._decode("args", self._workflow, data.get("args", [])))
            gen = self._fn(ctx, *args)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self._finish_raised(exc)
            return
        if not isinstance(gen, GeneratorType):
            close = getattr(gen, "close", None)
            if callable(close):
                close()  # e.g. a coroutine: do not leave it unawaited
            message = (
                f"workflow {self._workflow!r} must be a generator function (its body needs "
                f"a yield), but calling it returned {type(gen).__name__}"
            )
            self._finish(Failed(TypeError(message)))
            return
        self._gen = gen
        self._resume(True, None)

    def _resume(self, ok: bool, value: Any) -> None:
        """Send a value (or throw an error) into the generator until it waits or ends."""
        gen = self._gen
        ctx = self._ctx
        assert gen is not None and ctx is not None
        ctx._now = self._now
        self._waiting = _EMPTY
        while True:
            try:
                command = gen.send(value) if ok else gen.throw(value)
            except StopIteration as stop:
                self._gen = None
                self._finish_returned(stop.value)
                return
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                self._gen = None
                self._finish_raised(exc)
                return
            if type(command) is StepCall:  # the hot path: a single step
                unyielded = ctx._unyielded
                if unyielded:
                    if len(unyielded) == 1 and unyielded[0][0] is command:
                        unyielded.clear()
                    elif not self._check_unyielded(command):
                        return
                frame = gen.gi_frame
                kinds = self._kinds
                kinds.append(_tree.STEP)
                self._names.append(command.name)
                if gen.gi_yieldfrom is None and frame is not None:
                    self._codes.append(gen.gi_code)
                    self._lines.append(frame.f_lineno)
                else:
                    self._record_location(gen)
                slot = Slot(len(kinds), _tree.STEP, command.name, command, None, 0)
                self._top = slot
                self._top_cmd = command
                self._waiting = (slot,)
                return
            result = self._accept(command)
            if result is None:
                return
            ok, value = result

    def _accept(self, command: Any) -> tuple[bool, Any] | None:
        """Take a yielded value; returns a result at once if the yield is already complete."""
        gen = self._gen
        assert gen is not None
        problem = _messages.invalid_yield(command)
        if problem is not None:
            what, why = problem
            where = _messages.line_location(*_location(gen))
            message = f"workflow {self._workflow!r} yielded {what} at {where}: {why}"
            self._fail_at_yield(TypeError(message))
            return None
        if not self._check_unyielded(command):
            return None
        if isinstance(command, ContinueAsNew):
            self._finish(ContinuedAsNew(command.args))
            self.close()
            return None
        code, line = _location(gen)
        waiting: list[Slot] = []
        instant: list[Group] = []
        self._top = self._build(command, None, 0, code, line, waiting, instant)
        self._top_cmd = command
        self._waiting = tuple(waiting)
        for group in instant:  # an empty ctx.all() is done as soon as it is yielded
            if group.done:
                continue
            group.done = True
            result = _tree.complete(group, True, [])
            if result is not None:
                self._top = None
                return result
        return None

    def _build(
        self,
        cmd: Command,
        parent: Group | None,
        index: int,
        code: CodeType | None,
        line: int,
        waiting: list[Slot],
        instant: list[Group],
    ) -> Slot | Group:
        if isinstance(cmd, All | AnyOf):
            group = Group(isinstance(cmd, AnyOf), parent, index, len(cmd.commands))
            for child_index, child in enumerate(cmd.commands):
                node = self._build(child, group, child_index, code, line, waiting, instant)
                group.children.append(node)
            if not cmd.commands:
                instant.append(group)
            return group
        kind, name = _tree.classify(cmd) or (0, None)
        self._kinds.append(kind)
        self._names.append(name)
        self._codes.append(code)
        self._lines.append(line)
        slot = Slot(len(self._kinds), kind, name, cmd, parent, index)
        waiting.append(slot)
        return slot

    def _record_location(self, gen: GeneratorType[Any, Any, Any]) -> None:
        code, line = _location(gen)
        self._codes.append(code)
        self._lines.append(line)

    def _check_unyielded(self, command: Command) -> bool:
        """Fail the run if a command created since the last yield is not part of this one."""
        ctx = self._ctx
        assert ctx is not None
        unyielded = ctx._unyielded
        if not unyielded:
            return True
        yielded: set[int] = set()
        _messages.collect_ids(command, yielded)
        for created, code, line in unyielded:
            if id(created) not in yielded:
                self._fail_at_yield(_messages.unyielded_error(created, code, line))
                return False
        unyielded.clear()
        return True

    def _fail_at_yield(self, error: BaseException) -> None:
        self._finish(Failed(error))
        self.close()

    def _finish(self, outcome: Outcome) -> None:
        self._outcome = outcome
        self._waiting = _EMPTY
        self._top = None

    def _finish_returned(self, value: Any) -> None:
        error = self._pending_unyielded_error()
        self._finish(Completed(value) if error is None else Failed(error))

    def _finish_raised(self, exc: BaseException) -> None:
        error = self._pending_unyielded_error()
        if error is not None:
            error.__context__ = exc
            self._finish(Failed(error))
        elif isinstance(exc, Cancelled):
            self._finish(CancelledOutcome(exc.reason))
        else:
            cause = next((pos for err, pos in self._step_failures if err is exc), None)
            self._finish(Failed(exc, cause))

    def _pending_unyielded_error(self) -> UnyieldedCommandError | None:
        ctx = self._ctx
        if ctx is None or not ctx._unyielded:
            return None
        created, code, line = ctx._unyielded[0]
        ctx._unyielded.clear()
        return _messages.unyielded_error(created, code, line)

    # -- matching events to positions -------------------------------------------------------

    def _slot(self, event: HistoryEvent, kinds: int, name: str | None) -> Slot | None:
        """The pending slot an event is for; None if the event is ignored or blocks the run.

        ``kinds``: the slot kinds the event may be for (``TIMED``: waits only with a
        timeout); ``name``: the name it must have, if the event records one.
        """
        pos: int = event.data["pos"]
        if not 0 < pos <= len(self._kinds):
            self._not_yielded(event, pos)
            return None
        kind = self._kinds[pos - 1]
        if not kind & kinds or (kinds & _tree.TIMED and kind & _WAITS and not kind & _tree.TIMED):
            self._mismatch(event, pos)
            return None
        if name is not None and self._names[pos - 1] != name:
            self._mismatch(event, pos)
            return None
        waiting = self._waiting
        if waiting:
            index = pos - waiting[0].pos
            if 0 <= index < len(waiting):
                slot = waiting[index]
                if slot.state == PENDING:
                    return slot
        return None  # done or abandoned: accepted and ignored

    def _resolve(self, slot: Slot, ok: bool, value: Any) -> None:
        slot.state = _tree.DONE
        if slot.parent is None:
            self._top = None
            self._resume(ok, value)
            return
        result = _tree.complete(slot, ok, value)
        if result is not None:
            self._top = None
            self._resume(*result)

    def _block(self, position: int, recorded: str, yielded: str, location: str | None) -> None:
        error = NonDeterminismError(self._workflow, position, recorded, yielded, location)
        self.close()
        self._finish(Blocked(error))
        self._stopped = True

    def _mismatch(self, event: HistoryEvent, pos: int) -> None:
        index = pos - 1
        yielded = next((s.cmd.describe() for s in self._waiting if s.pos == pos), None)
        if yielded is None:
            yielded = _messages.describe_position(self._kinds[index], self._names[index])
        location = _messages.yield_location(self._codes[index], self._lines[index])
        self._block(pos, _messages.describe_event(event), yielded, location)

    def _not_yielded(self, event: HistoryEvent, pos: int) -> None:
        if self._ctx is None and self._outcome is None:
            raise ValueError(f"event {event.type!r} (seq {event.seq}) fed before run_started")
        yielded, location = self._what_the_code_did()
        self._block(pos, _messages.describe_event(event), yielded, location)

    def _what_the_code_did(self) -> tuple[str, str | None]:
        """Describe where the code stands, for a non-determinism message."""
        gen = self._gen
        if gen is not None and self._top_cmd is not None:
            positions = [str(slot.pos) for slot in self._waiting if slot.state == PENDING]
            at = ""
            if positions:
                noun = "position" if len(positions) == 1 else "positions"
                at = f" ({noun} {', '.join(positions)})"
            doing = f"nothing there yet; it is still waiting on {self._top_cmd.describe()}{at}"
            return doing, _messages.yield_location(*_location(gen))
        location = None
        if self._kinds:
            location = _messages.yield_location(self._codes[-1], self._lines[-1])
        return f"nothing more ({_messages.ending(self._outcome)})", location

    def _check_terminal(self, event: HistoryEvent, expected: type) -> None:
        if isinstance(self._outcome, expected):
            return
        pending = [slot.pos for slot in self._waiting if slot.state == PENDING]
        position = pending[0] if pending else len(self._kinds) + 1
        yielded, location = self._what_the_code_did()
        self._block(position, _messages.describe_event(event), yielded, location)


def _location(gen: GeneratorType[Any, Any, Any]) -> tuple[CodeType | None, int]:
    """The code and line of the yield the generator is suspended at (through yield from)."""
    inner: Any = gen.gi_yieldfrom
    while isinstance(inner, GeneratorType) and inner.gi_frame is not None:
        gen = inner
        inner = gen.gi_yieldfrom
    frame = gen.gi_frame
    if frame is None:
        return None, 0
    return gen.gi_code, frame.f_lineno
