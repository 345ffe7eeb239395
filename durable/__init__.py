"""pgdurable: durable execution for Python generator workflows, on PostgreSQL.

Everything a user needs is importable from here; the rest of the package is internal.
"""

from __future__ import annotations

from ._app import App, RunHandle
from ._models import Event, PruneResult, RetryPolicy, RunInfo, RunPage
from ._worker import Worker
from .replay import Context
from .replay.errors import (
    Cancelled,
    ChildFailed,
    ConfigError,
    ConflictError,
    DatabaseUnavailable,
    DurableError,
    LeaseLost,
    NonDeterminismError,
    RunCancelled,
    RunFailed,
    RunNotActive,
    RunNotFound,
    RunStateError,
    RunTimedOut,
    SerializationError,
    StepFailed,
    StoreError,
    UnyieldedCommandError,
    WaitTimeout,
    WorkflowNotFound,
)

__version__ = "0.1.0"

__all__ = [
    "App",
    "Cancelled",
    "ChildFailed",
    "ConfigError",
    "ConflictError",
    "Context",
    "DatabaseUnavailable",
    "DurableError",
    "Event",
    "LeaseLost",
    "NonDeterminismError",
    "PruneResult",
    "RetryPolicy",
    "RunCancelled",
    "RunFailed",
    "RunHandle",
    "RunInfo",
    "RunNotActive",
    "RunNotFound",
    "RunPage",
    "RunStateError",
    "RunTimedOut",
    "SerializationError",
    "StepFailed",
    "StoreError",
    "UnyieldedCommandError",
    "WaitTimeout",
    "Worker",
    "WorkflowNotFound",
    "__version__",
]
