"""``Context``: the object a workflow receives as its first argument."""

from __future__ import annotations

import logging
import random
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from types import CodeType, FrameType
from typing import Any, TypeVar

from .commands import (
    All,
    AnyOf,
    ChildCall,
    Command,
    ContinueAsNew,
    Sleep,
    WaitEvent,
    WaitSignal,
)

__all__ = ["Context", "current_context"]

_C = TypeVar("_C", bound=Command)

_local = threading.local()

# A second generator for uuid4(), so that drawing uuids does not shift ctx.random().
_UUID_SALT = 0x5DEECE66D


def current_context() -> Context | None:
    """The context of the workflow whose code runs in this thread right now, else None.

    The durable layer's step wrapper uses it to decide between returning a ``StepCall``
    (inside a workflow) and running the function (anywhere else).
    """
    ctx: Context | None = getattr(_local, "ctx", None)
    return ctx


def _set_current(ctx: Context | None) -> Context | None:
    """Install ``ctx`` as the current context of this thread; return the previous one."""
    previous: Context | None = getattr(_local, "ctx", None)
    _local.ctx = ctx
    return previous


class _SilentWhileReplaying(logging.Filter):
    """Drops records logged while the engine of this thread replays recorded history."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current_context()
        return ctx is None or not ctx._replaying


_REPLAY_FILTER = _SilentWhileReplaying()


def _is_internal(frame: FrameType) -> bool:
    """Frames of pgdurable itself (or marked ``__durable_internal__``) are not user code."""
    module_globals = frame.f_globals
    name = module_globals.get("__name__", "")
    return (
        name == "durable" or name.startswith("durable.") or "__durable_internal__" in module_globals
    )


def _seconds(value: float | timedelta, what: str) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{what} takes seconds (int or float) or a timedelta, not {value!r}")
    if seconds != seconds or seconds < 0:
        raise ValueError(f"{what} must not be negative (got {value!r})")
    return seconds


def _optional_seconds(value: float | timedelta | None, what: str) -> float | None:
    return None if value is None else _seconds(value, what)


class Context:
    """The workflow's handle on the runtime: commands to yield and deterministic helpers.

    Commands (``sleep``, ``wait_signal``, ``all``...) are returned to be yielded; helpers
    (``now``, ``uuid4``, ``random``, ``patched``...) return values directly and give the
    same answers every time the run is replayed.
    """

    def __init__(
        self, *, run_id: str, workflow: str, seed: int, scheduled_at: datetime | None = None
    ) -> None:
        self._run_id = run_id
        self._workflow = workflow
        self._seed = seed
        self._scheduled_at = scheduled_at
        self._random: random.Random | None = None
        self._uuid_random: random.Random | None = None
        self._logger: logging.Logger | None = None
        # Maintained by the engine:
        self._replaying = False
        self._now: datetime | None = None
        self._patches_seen: set[str] = set()
        self._patches_memo: dict[str, bool] = {}
        self._markers: list[tuple[str, dict[str, Any]]] = []
        self._unyielded: list[tuple[Command, CodeType | None, int]] = []

    # -- identity ---------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """The run's id (kept across ``continue_as_new``)."""
        return self._run_id

    @property
    def workflow(self) -> str:
        """The workflow's registered name."""
        return self._workflow

    @property
    def scheduled_at(self) -> datetime | None:
        """The tick of a run a schedule started (an aware UTC datetime); None elsewhere."""
        return self._scheduled_at

    @property
    def is_replaying(self) -> bool:
        """True while the code re-executes history that is already recorded."""
        return self._replaying

    @property
    def logger(self) -> logging.Logger:
        """``durable.workflow.<name>``; silent while the run is replaying."""
        if self._logger is None:
            logger = logging.getLogger(f"durable.workflow.{self._workflow}")
            if _REPLAY_FILTER not in logger.filters:
                logger.addFilter(_REPLAY_FILTER)
            self._logger = logger
        return self._logger

    # -- commands ---------------------------------------------------------------------------

    def sleep(self, duration: float | timedelta) -> Sleep:
        """A durable timer of ``duration`` (seconds or timedelta); yield it."""
        return self._created(Sleep(seconds=_seconds(duration, "sleep")))

    def sleep_until(self, when: datetime) -> Sleep:
        """A durable timer that fires at the aware datetime ``when``; yield it."""
        if not isinstance(when, datetime):
            raise TypeError(f"sleep_until takes an aware datetime, not {when!r}")
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                "sleep_until needs an aware datetime (e.g. datetime.now(timezone.utc)), "
                f"got the naive {when.isoformat()}"
            )
        return self._created(Sleep(until=when))

    def wait_signal(self, name: str, timeout: float | timedelta | None = None) -> WaitSignal:
        """Wait for the oldest unconsumed signal ``name``; yield it.

        The yield returns the payload, or raises ``WaitTimeout`` after ``timeout``.
        """
        return self._created(WaitSignal(name, _optional_seconds(timeout, "timeout")))

    def wait_event(self, key: str, timeout: float | timedelta | None = None) -> WaitEvent:
        """Wait for the latched event ``key``; yield it.

        The yield returns the payload, or raises ``WaitTimeout`` after ``timeout``.
        """
        return self._created(WaitEvent(key, _optional_seconds(timeout, "timeout")))

    def child(self, workflow: Any, *args: Any) -> ChildCall:
        """Start ``workflow`` (its name, or a decorated workflow) as a child run; yield it.

        The yield returns the child's result or raises ``ChildFailed``.
        """
        name: Any = workflow
        if not isinstance(name, str):
            name = getattr(workflow, "durable_name", None)
            if not isinstance(name, str):
                raise TypeError(
                    f"ctx.child takes a workflow name or a decorated workflow, not {workflow!r}"
                )
        return self._created(ChildCall(name, args))

    def all(self, *commands: Command) -> All:
        """Run ``commands`` concurrently; the yield returns their results in order.

        The first failure (in the order they happen) is raised as soon as it is known.
        """
        return self._created(All(commands))

    def any(self, *commands: Command) -> AnyOf:
        """Run ``commands`` concurrently; the yield returns ``(index, result)`` of the first.

        If the first to finish failed, its error is raised; the others are abandoned.
        """
        if not commands:
            raise ValueError("ctx.any() needs at least one command")
        return self._created(AnyOf(commands))

    def continue_as_new(self, *args: Any) -> ContinueAsNew:
        """Start the run over with a fresh history and ``args``; yield it (never returns)."""
        return self._created(ContinueAsNew(args))

    # -- deterministic helpers --------------------------------------------------------------

    def now(self) -> datetime:
        """The current time as recorded in the log (aware, UTC): the same on every replay."""
        now = self._now
        if now is None:
            raise RuntimeError("ctx.now() is only available while the workflow runs")
        if now.tzinfo is None:
            return now.replace(tzinfo=UTC)
        if now.tzinfo is not UTC:
            return now.astimezone(UTC)
        return now

    def random(self) -> random.Random:
        """The run's ``random.Random``, seeded from the log: the same object every call."""
        if self._random is None:
            self._random = random.Random(self._seed)
        return self._random

    def uuid4(self) -> uuid.UUID:
        """A random-looking UUID (version 4) that is the same on every replay."""
        if self._uuid_random is None:
            self._uuid_random = random.Random(self._seed ^ _UUID_SALT)
        return uuid.UUID(int=self._uuid_random.getrandbits(128), version=4)

    def patched(self, patch_id: str) -> bool:
        """True if this run reached this point with code that has the patch ``patch_id``.

        Runs that passed this point before the patch was deployed get False. The answer
        for a given id is fixed the first time it is asked in a run.
        """
        known = self._patches_memo.get(patch_id)
        if known is not None:
            return known
        if patch_id in self._patches_seen:
            answer = True
        elif self._replaying:
            answer = False
        else:
            answer = True
            self._markers.append(("patch_marker", {"patch_id": patch_id}))
        self._patches_memo[patch_id] = answer
        return answer

    def set_status(self, value: Any) -> None:
        """Publish a custom status for this run (visible in ``get_run``)."""
        if not self._replaying:
            self._markers.append(("status_set", {"value": value}))

    # -- engine side ------------------------------------------------------------------------

    def _created(self, command: _C) -> _C:
        """Register a command created by workflow code, for the never-yielded check."""
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and _is_internal(frame):
            frame = frame.f_back
        if frame is None:
            self._unyielded.append((command, None, 0))
        else:
            self._unyielded.append((command, frame.f_code, frame.f_lineno))
        return command

    def __repr__(self) -> str:
        return f"<Context workflow={self._workflow!r} run_id={self._run_id!r}>"
