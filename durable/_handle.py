"""Values shared by the App and the worker: run handles, registered definitions, time."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._models import RetryPolicy, RunInfo

if TYPE_CHECKING:
    from ._app import App


__all__ = ["RunHandle", "StepDef", "WorkflowDef", "new_seed", "utcnow"]


def utcnow() -> datetime:
    """The current time, aware, UTC."""
    return datetime.now(UTC)


def new_seed() -> int:
    """A fresh seed for ``ctx.random()`` / ``ctx.uuid4()``, recorded in the log."""
    return secrets.randbits(63)


@dataclass(frozen=True)
class StepDef:
    """A registered step."""

    name: str
    fn: Callable[..., Any]
    retry: RetryPolicy
    timeout: float | None
    result_annotation: Any


@dataclass(frozen=True)
class WorkflowDef:
    """A registered workflow."""

    name: str
    fn: Callable[..., Any]
    timeout: float | None
    param_annotations: tuple[Any, ...]
    result_annotation: Any


class RunHandle:
    """A reference to one run: its id, status, information and result."""

    def __init__(self, app: App, run_id: str) -> None:
        self.app = app
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r})"

    def status(self) -> str:
        """The run's current status."""
        return self.app.store.status(self.run_id)

    def info(self) -> RunInfo:
        """Everything known about the run (see :meth:`App.get_run`)."""
        return self.app.get_run(self.run_id)

    def result(self, timeout: float | None = None) -> Any:
        """Block until the run ends; return its result or raise RunFailed, RunCancelled,
        RunTimedOut, or TimeoutError when ``timeout`` seconds pass first."""
        return self.app._wait_result(self.run_id, timeout)
