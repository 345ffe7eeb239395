"""The words of the engine's errors: descriptions of events, yields and locations."""

from __future__ import annotations

import reprlib
from os.path import basename
from types import CodeType, GeneratorType
from typing import Any

from . import _tree
from .commands import (
    All,
    AnyOf,
    CancelledOutcome,
    ChildCall,
    Command,
    Completed,
    ContinueAsNew,
    ContinuedAsNew,
    Failed,
    HistoryEvent,
    Outcome,
    Sleep,
    StepCall,
    WaitEvent,
    WaitSignal,
)
from .errors import UnyieldedCommandError

YIELDABLE = (
    "a step call, ctx.sleep(...), ctx.sleep_until(...), ctx.wait_signal(...), "
    "ctx.wait_event(...), ctx.child(...), ctx.all(...), ctx.any(...) "
    "or ctx.continue_as_new(...)"
)


def line_location(code: CodeType | None, line: int) -> str | None:
    """``shop.py:14``, or None when unknown."""
    if code is None:
        return None
    return f"{basename(code.co_filename)}:{line}"


def yield_location(code: CodeType | None, line: int) -> str | None:
    """``shop.py:14 (order)``: a yield's location for non-determinism messages."""
    if code is None:
        return None
    return f"{basename(code.co_filename)}:{line} ({code.co_name})"


_EVENT_DESCRIPTIONS = {
    "timer_started": "a timer (of a sleep or a wait timeout)",
    "timer_fired": "a sleep",
    "wait_timed_out": "a wait with a timeout",
    "child_completed": "a child workflow",
    "child_failed": "a child workflow",
    "run_completed": "run_completed (the workflow returned)",
    "run_failed": "run_failed (the workflow failed)",
    "run_cancelled": "run_cancelled (the workflow ended cancelled)",
    "run_continued": "run_continued (the workflow continued as new)",
}


def describe_event(event: HistoryEvent) -> str:
    """What a recorded event says the code did, in the words of ``Command.describe``."""
    kind = event.type
    data = event.data
    if kind.startswith("step_"):
        return f"step {data.get('name')!r}"
    if kind == "signal_received" or (kind == "wait_started" and data.get("kind") == "signal"):
        return f"wait_signal({data.get('name')!r})"
    if kind == "wait_started":
        return f"wait_event({data.get('name')!r})"
    if kind == "event_received":
        return f"wait_event({data.get('key')!r})"
    if kind == "child_started":
        return f"child({data.get('workflow')!r})"
    return _EVENT_DESCRIPTIONS.get(kind, kind)


def describe_position(kind: int, name: str | None) -> str:
    """A past position's command, from what the engine keeps of it."""
    timeout = ", timeout=..." if kind & _tree.TIMED else ""
    if kind == _tree.STEP:
        return f"step {name!r}"
    if kind == _tree.SLEEP:
        return "a sleep"
    if kind & _tree.SIGNAL:
        return f"wait_signal({name!r}{timeout})"
    if kind & _tree.EVENT:
        return f"wait_event({name!r}{timeout})"
    return f"child({name!r})"


def ending(outcome: Outcome | None) -> str:
    """How the code ended, for "the code yielded nothing more (...)"."""
    if isinstance(outcome, Completed):
        return "the workflow returned"
    if isinstance(outcome, Failed):
        return f"the workflow raised {type(outcome.error).__name__}"
    if isinstance(outcome, CancelledOutcome):
        return "the workflow ended cancelled"
    if isinstance(outcome, ContinuedAsNew):
        return "the workflow continued as new"
    return "the workflow has not started"


def invalid_yield(value: Any) -> tuple[str, str] | None:
    """``(what, why)`` if ``value`` cannot be yielded by a workflow, else None."""
    if isinstance(value, GeneratorType):
        return (
            f"a generator ({value.__qualname__})",
            "to run a helper generator write `yield from helper(...)`",
        )
    if not isinstance(value, Command):
        return (
            f"{reprlib.repr(value)} ({type(value).__name__})",
            f"a workflow may only yield {YIELDABLE}",
        )
    if isinstance(value, All | AnyOf):
        for child in value.commands:
            if isinstance(child, ContinueAsNew):
                return (
                    value.describe(),
                    "continue_as_new cannot be combined in ctx.all/ctx.any; yield it alone",
                )
            problem = invalid_yield(child)
            if problem is not None:
                return value.describe(), f"it contains {problem[0]}: {problem[1]}"
        return None
    if not isinstance(value, ContinueAsNew) and _tree.classify(value) is None:
        return repr(value), "the engine does not know this command"
    return None


def collect_ids(command: Command, into: set[int]) -> None:
    """The ids of ``command`` and of every command nested in it."""
    into.add(id(command))
    if isinstance(command, All | AnyOf):
        for child in command.commands:
            collect_ids(child, into)


_CTX_METHODS: tuple[tuple[type[Command], str], ...] = (
    (WaitSignal, "wait_signal"),
    (WaitEvent, "wait_event"),
    (ChildCall, "child"),
    (All, "all"),
    (AnyOf, "any"),
    (ContinueAsNew, "continue_as_new"),
)


def _hint(command: Command) -> str:
    if isinstance(command, StepCall):
        return f"yield {command.name.rsplit('.', 1)[-1]}(...)"
    if isinstance(command, Sleep):
        method = "sleep" if command.seconds is not None else "sleep_until"
        return f"yield ctx.{method}(...)"
    for kind, method in _CTX_METHODS:
        if isinstance(command, kind):
            return f"yield ctx.{method}(...)"
    return "yield ..."


def unyielded_error(command: Command, code: CodeType | None, line: int) -> UnyieldedCommandError:
    """The error for ``command``, created at ``code``:``line`` and never yielded."""
    return UnyieldedCommandError(command.describe(), line_location(code, line), _hint(command))
