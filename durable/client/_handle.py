"""``RunHandle``: a reference to one run."""

from __future__ import annotations

from typing import Any, Protocol

from .._models import RunInfo

__all__ = ["RunHandle", "RunSource"]


class RunSource(Protocol):
    """What a handle asks about its run (the client answers)."""

    def status(self, run_id: str) -> str: ...

    def get_run(self, run_id: str) -> RunInfo: ...

    def wait_result(self, run_id: str, timeout: float | None) -> Any: ...


class RunHandle:
    """A reference to one run: its id, status, information and result.

    ``created`` is True when the call that returned the handle created the run, False
    when it found an existing one (same run id, idempotency key or dedup key) or only
    names a run (``app.handle``).
    """

    def __init__(self, client: RunSource, run_id: str, *, created: bool = False) -> None:
        self._client = client
        self.run_id = run_id
        self.created = created

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunHandle) and other.run_id == self.run_id

    def __hash__(self) -> int:
        return hash(self.run_id)

    def status(self) -> str:
        """The run's current status."""
        return str(self._client.status(self.run_id))

    def info(self) -> RunInfo:
        """Everything known about the run (see :meth:`durable.App.get_run`)."""
        return self._client.get_run(self.run_id)

    def result(self, timeout: float | None = None) -> Any:
        """Block until the run ends; return its result or raise RunFailed, RunCancelled,
        RunTimedOut, or TimeoutError when ``timeout`` seconds pass first."""
        return self._client.wait_result(self.run_id, timeout)
