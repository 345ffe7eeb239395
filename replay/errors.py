"""The engine's errors, and the root of every error of pgdurable.

Every error the project raises derives from :class:`DurableError`, except
:class:`Cancelled`, which derives from ``BaseException`` so that a bare
``except Exception`` in workflow code does not swallow a cancellation. The store's errors
live in ``durable.store``, the face's in ``durable._errors``; ``durable`` re-exports all.

Each exception keeps its fields in ``args`` (positional, in constructor order), so it
pickles and unpickles with its attributes, and renders a one-line ``str()``.
"""

from __future__ import annotations

__all__ = [
    "Cancelled",
    "ChildFailed",
    "DurableError",
    "NonDeterminismError",
    "RunFailed",
    "StepFailed",
    "UnyieldedCommandError",
    "WaitTimeout",
]


def _error_text(error_type: str | None, message: str | None) -> str:
    """``"ValueError: card declined"``, or whichever half is present."""
    if error_type and message:
        return f"{error_type}: {message}"
    return error_type or message or ""


class DurableError(Exception):
    """Base class of every pgdurable error (``Cancelled`` excepted)."""


class StepFailed(DurableError):
    """A step exhausted its attempts; raised inside the workflow at the ``yield``."""

    def __init__(self, step: str, error_type: str, message: str, attempts: int) -> None:
        super().__init__(step, error_type, message, attempts)
        self.step = step
        self.error_type = error_type
        self.message = message
        self.attempts = attempts

    def __str__(self) -> str:
        noun = "attempt" if self.attempts == 1 else "attempts"
        detail = _error_text(self.error_type, self.message)
        return f"step {self.step!r} failed after {self.attempts} {noun}: {detail}"


class WaitTimeout(DurableError):
    """A ``wait_signal`` or ``wait_event`` reached its timeout."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(kind, name)
        self.kind = kind
        self.name = name

    def __str__(self) -> str:
        return f"timed out waiting for {self.kind} {self.name!r}"


class ChildFailed(DurableError):
    """A child workflow failed, was cancelled or timed out."""

    def __init__(
        self,
        workflow: str,
        child_run_id: str,
        status: str,
        error_type: str | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(workflow, child_run_id, status, error_type, message)
        self.workflow = workflow
        self.child_run_id = child_run_id
        self.status = status
        self.error_type = error_type
        self.message = message

    def __str__(self) -> str:
        how = {"failed": "failed", "cancelled": "was cancelled", "timed_out": "timed out"}.get(
            self.status, f"ended {self.status}"
        )
        text = f"child workflow {self.workflow!r} (run {self.child_run_id}) {how}"
        detail = _error_text(self.error_type, self.message)
        return f"{text}: {detail}" if detail else text


class NonDeterminismError(DurableError):
    """The workflow code no longer matches its recorded log; the run is blocked."""

    def __init__(
        self,
        workflow: str,
        position: int,
        recorded: str,
        yielded: str,
        location: str | None = None,
    ) -> None:
        super().__init__(workflow, position, recorded, yielded, location)
        self.workflow = workflow
        self.position = position
        self.recorded = recorded
        self.yielded = yielded
        self.location = location

    def __str__(self) -> str:
        text = (
            f"workflow {self.workflow!r} is not deterministic at position {self.position}: "
            f"the log recorded {self.recorded} but the code yielded {self.yielded}"
        )
        return f"{text} at {self.location}" if self.location else text


class UnyieldedCommandError(DurableError):
    """A command (usually a step call) was created inside a workflow but never yielded."""

    def __init__(self, command: str, location: str | None = None, hint: str | None = None) -> None:
        super().__init__(command, location, hint)
        self.command = command
        self.location = location
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.command} was called"
        if self.location:
            text += f" at {self.location}"
        text += " but never yielded"
        return f"{text}; write `{self.hint}`" if self.hint else text


class RunFailed(DurableError):
    """The run ended ``failed`` (raised by ``RunHandle.result``)."""

    def __init__(self, run_id: str, error_type: str, message: str) -> None:
        super().__init__(run_id, error_type, message)
        self.run_id = run_id
        self.error_type = error_type
        self.message = message

    def __str__(self) -> str:
        detail = _error_text(self.error_type, self.message)
        return f"run {self.run_id} failed: {detail}" if detail else f"run {self.run_id} failed"


class Cancelled(BaseException):
    """Raised inside a workflow at its current ``yield`` when the run is cancelled.

    Derives from ``BaseException`` so that ``except Exception`` does not swallow it;
    ``try/except/finally`` can still catch it to run compensating steps.
    """

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"cancelled: {self.reason}" if self.reason else "cancelled"
