"""What the worker keeps per run it holds, and the pieces its parts share.

The worker is split along its seams: claiming and driving runs (``_worker``), the inbox
and timers (``_inbox``), and the ends of runs (``_ending``). ``WorkerBase`` names, for the
type checker, what each part uses of the others.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from ._codec import qualified_name
from .replay import (
    Engine,
    PendingStep,
)
from .store import Claim, NewEvent
from .store._group import GroupAppender

if TYPE_CHECKING:
    from ._app import App
    from ._handle import StepDef

Mode = Literal["hold", "release", "finish"]


@dataclass(eq=False)
class Activation:
    """A run whose lease this worker holds."""

    claim: Claim
    engine: Engine
    token: uuid.UUID
    last_seq: int
    history_start: int
    lock: threading.RLock = field(default_factory=threading.RLock)
    in_flight: set[int] = field(default_factory=set)
    checked_waits: set[int] = field(default_factory=set)
    nudged: bool = False
    paused: bool = False
    done: bool = False
    custom_status: Any = None
    set_custom: bool = False
    tick_at: datetime | None = None

    @property
    def run_id(self) -> str:
        return self.claim.run_id


class _Lost(Exception):
    """The activation can no longer write (lease lost or the database went away)."""


class WorkerBase:
    """The attributes and methods the worker's parts use of each other (typing only)."""

    if TYPE_CHECKING:
        app: App
        lease_seconds: float
        worker_id: str
        _group: GroupAppender
        _state_lock: threading.Lock
        _stopping: threading.Event
        _to_release: list[tuple[str, uuid.UUID]]

        def _write(
            self,
            act: Activation,
            produced: list[NewEvent],
            mode: Mode,
            *,
            status: str = "running",
            wake_at: datetime | None = None,
            error: dict[str, Any] | None = None,
        ) -> None: ...

        def _drop(self, act: Activation, *, release: bool, keep_engine: bool = False) -> None: ...

        def _numbered(self, act: Activation, events: list[NewEvent]) -> list[NewEvent]: ...

        def _markers(self, act: Activation) -> list[NewEvent]: ...

        def _advance(self, act: Activation, produced: list[NewEvent]) -> PendingStep | None: ...

        def _submit(self, fn: Any, *args: Any) -> None: ...

        def _new_engine(self, claim: Claim) -> Engine: ...

        def _note_wake(self, at: datetime | None) -> None: ...

        def _run_step_async(self, act: Activation, step: PendingStep) -> None: ...

        def _finish(self, act: Activation, produced: list[NewEvent], outcome: Any) -> None: ...


def _call_with_timeout(definition: StepDef, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if definition.timeout is None:
        return definition.fn(*args, **kwargs)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = definition.fn(*args, **kwargs)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"durable-step-{definition.name}", daemon=True)
    thread.start()
    thread.join(definition.timeout)
    if thread.is_alive():
        raise TimeoutError(f"step {definition.name!r} timed out after {definition.timeout:g}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _error_type(exc: BaseException) -> str:
    module = type(exc).__module__
    if module.startswith("durable.replay") or module.startswith("durable."):
        return f"durable.{type(exc).__qualname__}"
    return qualified_name(type(exc))


def _now() -> datetime:
    return datetime.now(UTC)
