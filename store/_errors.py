"""The store's errors: what the database refused, and what the runs' state forbids.

psycopg's own exceptions never leave ``store/``: they are wrapped here, at the boundary,
with ``raise ... from exc`` so the original stays in ``__cause__``.
"""

from __future__ import annotations

from ..replay.errors import DurableError

__all__ = [
    "ConfigError",
    "ConflictError",
    "DatabaseUnavailable",
    "InvalidConnection",
    "LeaseLost",
    "RunNotActive",
    "RunNotFound",
    "RunStateError",
    "ScheduleNotFound",
    "StoreError",
]


class ConfigError(DurableError):
    """The configuration is unusable (no DSN and no embedded server, a bad option...)."""


class StoreError(DurableError):
    """The database rejected or failed an operation."""


class DatabaseUnavailable(StoreError):
    """The database cannot be reached."""


class InvalidConnection(DurableError, ValueError):
    """A connection passed as ``conn=`` cannot take pgdurable's writes: closed, in
    autocommit mode, in a failed transaction, or to another database."""


class ConflictError(StoreError):
    """A concurrent writer won: the expected state no longer holds."""


class LeaseLost(ConflictError):
    """The worker no longer holds the run's lease, or the log moved on; nothing was written."""


class RunNotActive(DurableError):
    """The run has ended, so it cannot receive this (e.g. a signal)."""

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(run_id, status)
        self.run_id = run_id
        self.status = status

    def __str__(self) -> str:
        return f"run {self.run_id} is not active (status {self.status})"


class RunNotFound(DurableError):
    """No run has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id

    def __str__(self) -> str:
        return f"no run with id {self.run_id!r}"


class RunStateError(DurableError):
    """The operation is not allowed in the run's current status (e.g. retry a running run)."""

    def __init__(
        self, message: str, *, run_id: str | None = None, status: str | None = None
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status


class ScheduleNotFound(DurableError, LookupError):
    """No schedule has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no schedule named {self.name!r} (durable schedules lists them)"
