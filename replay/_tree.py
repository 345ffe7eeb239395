"""The engine's bookkeeping: one ``Slot`` per position, ``Group`` nodes for all/any.

A yield builds a small tree: a primitive command is a ``Slot`` (it owns a position), a
``ctx.all`` / ``ctx.any`` is a ``Group`` whose children are slots or groups. Events resolve
slots; ``complete`` carries a result up the tree until a group still waits or the whole
yield is done.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .commands import ChildCall, Command, Sleep, StepCall, WaitEvent, WaitSignal

# Kinds of slot: bit flags so that a check can accept several.
STEP = 1
SLEEP = 2
SIGNAL = 4
EVENT = 8
CHILD = 16
TIMED = 32  # added to SIGNAL / EVENT when the wait has a timeout

# Slot states.
PENDING = 0
DONE = 1
ABANDONED = 2


class Slot:
    """The state of a primitive command of the current yield, at position ``pos``.

    Slots live only while their yield is awaited; what the engine keeps about older
    positions is their kind and name (for checking events that still arrive for them).
    """

    __slots__ = (
        "attempts",
        "child_run_id",
        "cmd",
        "fire_at",
        "index",
        "kind",
        "name",
        "not_before",
        "parent",
        "pos",
        "started",
        "state",
    )

    def __init__(
        self,
        pos: int,
        kind: int,
        name: str | None,
        cmd: Command,
        parent: Group | None,
        index: int,
    ) -> None:
        self.pos = pos
        self.kind = kind
        self.name = name
        self.cmd = cmd
        self.parent = parent
        self.index = index
        self.state = PENDING
        self.attempts = 0
        self.not_before: datetime | None = None
        self.fire_at: datetime | None = None
        self.child_run_id: str | None = None
        self.started = False


class Group:
    """A ``ctx.all`` (``is_any`` False) or ``ctx.any`` waiting on its children."""

    __slots__ = ("children", "done", "index", "is_any", "parent", "remaining", "results")

    def __init__(self, is_any: bool, parent: Group | None, index: int, size: int) -> None:
        self.is_any = is_any
        self.parent = parent
        self.index = index
        self.children: list[Slot | Group] = []
        self.results: list[Any] = [None] * size
        self.remaining = size
        self.done = False


def classify(cmd: Command) -> tuple[int, str | None] | None:
    """``(kind, name)`` of a primitive command, None for anything else."""
    if isinstance(cmd, StepCall):
        return STEP, cmd.name
    if isinstance(cmd, Sleep):
        return SLEEP, None
    if isinstance(cmd, WaitSignal):
        return (SIGNAL if cmd.timeout is None else SIGNAL | TIMED), cmd.name
    if isinstance(cmd, WaitEvent):
        return (EVENT if cmd.timeout is None else EVENT | TIMED), cmd.key
    if isinstance(cmd, ChildCall):
        return CHILD, cmd.workflow
    return None


def abandon(group: Group, keep: Slot | Group | None) -> None:
    """Mark every still-pending slot under ``group`` (except ``keep``) abandoned."""
    for child in group.children:
        if child is keep:
            continue
        if isinstance(child, Slot):
            if child.state == PENDING:
                child.state = ABANDONED
        elif not child.done:
            child.done = True
            abandon(child, None)


def complete(node: Slot | Group, ok: bool, value: Any) -> tuple[bool, Any] | None:
    """Carry ``node``'s result up the tree.

    Returns ``(ok, value)`` for the whole yield once its top node is done, else None.
    """
    while True:
        parent = node.parent
        if parent is None:
            return ok, value
        if parent.is_any:
            parent.done = True
            abandon(parent, node)
            if ok:
                value = (node.index, value)
        elif ok:
            parent.results[node.index] = value
            parent.remaining -= 1
            if parent.remaining:
                return None
            parent.done = True
            value = parent.results
        else:
            parent.done = True
            abandon(parent, node)
        node = parent


def parse_time(raw: Any) -> datetime | None:
    """An ISO 8601 string (or a datetime) from event data, as an aware datetime."""
    if raw is None:
        return None
    value = raw if isinstance(raw, datetime) else datetime.fromisoformat(raw)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
