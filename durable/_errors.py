"""The errors the face of pgdurable raises itself: codecs, the registry, run results.

The engine's errors (with the root ``DurableError``) live in ``durable.replay.errors``,
the store's in ``durable.store``; ``durable`` re-exports them all.
"""

from __future__ import annotations

from .replay.errors import DurableError

__all__ = [
    "AmbiguousRunId",
    "InvalidArgument",
    "RunCancelled",
    "RunTimedOut",
    "SerializationError",
    "WorkflowNotFound",
]


class InvalidArgument(DurableError, ValueError):
    """An argument is out of range or not one of the accepted values (also a
    ``ValueError``)."""


class SerializationError(DurableError):
    """A value could not be encoded or decoded by the codec."""


class WorkflowNotFound(DurableError):
    """No workflow is registered under the requested name."""

    def __init__(self, message: str | None = None, *, workflow: str | None = None) -> None:
        if message is None:
            message = (
                f"no workflow named {workflow!r} is registered"
                if workflow is not None
                else "workflow not found"
            )
        super().__init__(message)
        self.workflow = workflow


class RunCancelled(DurableError):
    """The run ended ``cancelled`` (raised by ``RunHandle.result``)."""

    def __init__(self, run_id: str, reason: str | None = None) -> None:
        super().__init__(run_id, reason)
        self.run_id = run_id
        self.reason = reason

    def __str__(self) -> str:
        text = f"run {self.run_id} was cancelled"
        return f"{text}: {self.reason}" if self.reason else text


class RunTimedOut(DurableError):
    """The run ended ``timed_out`` (raised by ``RunHandle.result``)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id

    def __str__(self) -> str:
        return f"run {self.run_id} timed out"


class AmbiguousRunId(DurableError):
    """A run id prefix matches more than one run (raised by ``App.resolve_run_id``).

    ``candidates`` holds up to five of the matching run ids, in order; ``more`` is True
    when there are others.
    """

    def __init__(self, prefix: str, candidates: list[str], *, more: bool = False) -> None:
        super().__init__(prefix, candidates)
        self.prefix = prefix
        self.candidates = list(candidates)
        self.more = more

    def __str__(self) -> str:
        listed = ", ".join(self.candidates) + (", ..." if self.more else "")
        return f"run id prefix {self.prefix!r} is ambiguous: it matches {listed}"
