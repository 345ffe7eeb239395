"""pgdurable: durable execution for Python generator workflows, on PostgreSQL.

Everything a user needs is importable from here; the rest of the package is internal.
"""

from __future__ import annotations

from ._app import App
from ._errors import (
    AmbiguousRunId,
    InvalidArgument,
    RunCancelled,
    RunTimedOut,
    SerializationError,
    WorkflowNotFound,
)
from ._models import (
    Bucket,
    Event,
    PruneResult,
    Queue,
    QueueInfo,
    Rate,
    RetryPolicy,
    RunInfo,
    RunPage,
    ScheduleInfo,
    WorkerInfo,
)
from ._replayer import Mismatch, ReplayReport
from ._schedules import Schedule
from .client import AsyncClient, AsyncRunHandle, RunHandle
from .replay import Context, EventType, RunStatus
from .replay.errors import (
    Cancelled,
    ChildFailed,
    DurableError,
    NonDeterminismError,
    RunFailed,
    StepFailed,
    UnyieldedCommandError,
    WaitTimeout,
)
from .store import (
    ConfigError,
    ConflictError,
    DatabaseUnavailable,
    InvalidConnection,
    LeaseLost,
    RunNotActive,
    RunNotFound,
    RunStateError,
    ScheduleNotFound,
    StoreError,
    Timeouts,
)
from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "AmbiguousRunId",
    "App",
    "AsyncClient",
    "AsyncRunHandle",
    "Bucket",
    "Cancelled",
    "ChildFailed",
    "ConfigError",
    "ConflictError",
    "Context",
    "DatabaseUnavailable",
    "DurableError",
    "Event",
    "EventType",
    "InvalidArgument",
    "InvalidConnection",
    "LeaseLost",
    "Mismatch",
    "NonDeterminismError",
    "PruneResult",
    "Queue",
    "QueueInfo",
    "Rate",
    "ReplayReport",
    "RetryPolicy",
    "RunCancelled",
    "RunFailed",
    "RunHandle",
    "RunInfo",
    "RunNotActive",
    "RunNotFound",
    "RunPage",
    "RunStateError",
    "RunStatus",
    "RunTimedOut",
    "Schedule",
    "ScheduleInfo",
    "ScheduleNotFound",
    "SerializationError",
    "StepFailed",
    "StoreError",
    "Timeouts",
    "UnyieldedCommandError",
    "WaitTimeout",
    "Worker",
    "WorkerInfo",
    "WorkflowNotFound",
    "__version__",
]
