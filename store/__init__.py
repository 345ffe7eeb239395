"""The only code that talks to PostgreSQL: migrations, the event store, leases.

Installed as ``durable.store``. It imports nothing of ``durable`` and of the engine only
its errors and its vocabulary; psycopg's errors are wrapped into the ones below.
"""

from __future__ import annotations

from ._adb import AsyncDatabase, AsyncListener
from ._clock import ClockState, VirtualClock, drop_schema, install_virtual_clock
from ._db import Database, Listener, Timeouts, validate_dsn
from ._errors import (
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
)
from ._group import GroupAppender, NotFinishedHere
from ._leases import LeaseStore, Mode
from ._migrate import migrate
from ._plan import Plan, Query, Unit
from ._records import (
    AppendResult,
    BucketRow,
    Claim,
    DueTimer,
    InboxWait,
    KeyCount,
    NewEvent,
    NewRun,
    PendingFacts,
    PruneCounts,
    QueueRow,
    QueueSpec,
    RunEnd,
    RunRow,
    StatRow,
    StoredEvent,
    SyncResult,
    WorkerBeat,
    WorkerRow,
)
from ._runs import NEW_UNQUEUED, Created, RunStore
from ._schedules import SCHEDULES_CHANGED, FireDecision, ScheduleRow, ScheduleStore
from ._store import Store

__all__ = [
    "NEW_UNQUEUED",
    "SCHEDULES_CHANGED",
    "AppendResult",
    "AsyncDatabase",
    "AsyncListener",
    "BucketRow",
    "Claim",
    "ClockState",
    "ConfigError",
    "ConflictError",
    "Created",
    "Database",
    "DatabaseUnavailable",
    "DueTimer",
    "FireDecision",
    "GroupAppender",
    "InboxWait",
    "InvalidConnection",
    "KeyCount",
    "LeaseLost",
    "LeaseStore",
    "Listener",
    "Mode",
    "NewEvent",
    "NewRun",
    "NotFinishedHere",
    "PendingFacts",
    "Plan",
    "PruneCounts",
    "Query",
    "QueueRow",
    "QueueSpec",
    "RunEnd",
    "RunNotActive",
    "RunNotFound",
    "RunRow",
    "RunStateError",
    "RunStore",
    "ScheduleNotFound",
    "ScheduleRow",
    "ScheduleStore",
    "StatRow",
    "Store",
    "StoreError",
    "StoredEvent",
    "SyncResult",
    "Timeouts",
    "Unit",
    "VirtualClock",
    "WorkerBeat",
    "WorkerRow",
    "drop_schema",
    "install_virtual_clock",
    "migrate",
    "validate_dsn",
]
