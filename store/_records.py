"""The typed values that cross the store's boundary: events, claims, runs, inbox items.

Every method of the store takes and returns these (never positional tuples or loose
dicts); values inside them that came from the log (arguments, results, payloads) are the
codec's JSON, which the store does not interpret.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..replay.vocabulary import EventType, RunStatus

__all__ = [
    "AppendResult",
    "Claim",
    "DueTimer",
    "InboxWait",
    "KeyCount",
    "NewEvent",
    "NewRun",
    "PendingFacts",
    "PruneCounts",
    "QueueRow",
    "QueueSpec",
    "RunEnd",
    "RunRow",
    "StatRow",
    "StoredEvent",
    "SyncResult",
    "WorkerBeat",
    "WorkerRow",
]


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its seq is assigned by the caller (expected_seq + 1, ...)."""

    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event read back from the log."""

    run_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to create with its first events (``run_started``, or a fork's copied log).

    ``wake_at`` is when it may start; ``deadline`` is ``wake_at`` plus the workflow timeout
    (``timeout_seconds``), both None without one. ``timeout_unknown`` is set when the
    creator does not register the workflow (a child of a workflow it does not know): the
    first worker that claims the run, which registers it, fills in the timeout.
    """

    run_id: str
    workflow: str
    events: Sequence[NewEvent]
    now: datetime
    wake_at: datetime
    idempotency_key: str | None = None
    timeout_seconds: float | None = None
    deadline: datetime | None = None
    timeout_unknown: bool = False
    parent_run_id: str | None = None
    parent_pos: int | None = None
    source_run_id: str | None = None
    notify: bool = True
    queue: str | None = None
    priority: int = 0
    concurrency_key: str | None = None
    dedup_key: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A run this worker now holds the lease of."""

    run_id: str
    workflow: str
    token: uuid.UUID
    last_seq: int
    history_start: int
    deadline: datetime | None
    nudged: bool
    parent_run_id: str | None
    parent_pos: int | None
    #: the workflow timeout is not known yet (see :class:`NewRun`); created_at is its base
    timeout_unknown: bool = False
    created_at: datetime | None = None
    #: the run's log, when the claim already read it (runs never started); else None
    events: list[StoredEvent] | None = None
    #: the queue the run was claimed through (None: an unqueued run)
    queue: str | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append learned about the run's row."""

    nudged: bool
    wake_now: bool
    watched: bool


@dataclass(frozen=True, slots=True)
class RunEnd:
    """A run's end (or its block), to record with its family effects in one transaction."""

    run_id: str
    token: uuid.UUID
    expected_seq: int
    events: Sequence[NewEvent]
    status: RunStatus
    error: dict[str, Any] | None
    custom_status: Any = None
    set_custom: bool = False
    parent_run_id: str | None = None
    parent_pos: int | None = None


@dataclass(frozen=True, slots=True)
class InboxWait:
    """A wait of the run's current yield, for an inbox sync: position, kind and name.

    ``check_latched``: look the key up in the latched events (and register the run as a
    waiter); the worker asks on the first look at a wait and when the run was nudged.
    """

    pos: int
    kind: str  # "signal" or "event"
    name: str
    check_latched: bool = True


@dataclass(frozen=True, slots=True)
class DueTimer:
    """A timer (a sleep, or a wait's timeout) that has come due, for an inbox sync."""

    at: datetime
    pos: int
    type: EventType  # TIMER_FIRED or WAIT_TIMED_OUT


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What an inbox sync recorded (already numbered and appended), and whether the inbox
    still holds something the run could take now (sync again)."""

    events: list[NewEvent] = field(default_factory=list)
    more: bool = False
    #: positions of the waits the sync looked at (a later sync looks at the others)
    checked: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run's projection row, with the data of its first and (for ended runs) last event."""

    run_id: str
    workflow: str
    status: RunStatus
    custom_status: Any
    error: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    parent_run_id: str | None
    source_run_id: str | None
    idempotency_key: str | None
    last_seq: int
    history_start: int
    wake_at: datetime | None
    lease_owner: str | None
    deadline: datetime | None
    timeout_seconds: float | None
    timeout_unknown: bool
    start_data: dict[str, Any] | None
    end_data: dict[str, Any] | None
    queue: str | None = None
    priority: int = 0
    concurrency_key: str | None = None
    dedup_key: str | None = None
    admitted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue's limits as declared (None: no limit); ``rate_per`` goes with ``rate_limit``."""

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    key_concurrency: int | None = None
    rate_limit: int | None = None
    rate_per: float | None = None


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A queue's limits with its runs waiting for a slot and holding one."""

    spec: QueueSpec
    pending: int
    running: int


@dataclass(frozen=True, slots=True)
class KeyCount:
    """Runs of one concurrency key of a queue: holding a slot, and waiting for one."""

    key: str
    running: int
    pending: int


@dataclass(frozen=True, slots=True)
class PendingFacts:
    """What a pending run's ``pending_reason`` is made of (see the pending_facts query)."""

    wake_at: datetime | None
    deferred: bool
    served: bool
    concurrency: int | None
    key_concurrency: int | None
    rate_limit: int | None
    rate_per: float | None
    held: int
    key_held: int
    recent: int
    next_start_in: float | None
    ahead: int


@dataclass(frozen=True, slots=True)
class BucketRow:
    """One bucket of :meth:`RunStore.timeseries`."""

    start: datetime
    started: int
    completed: int
    failed: int
    p50_seconds: float | None
    p95_seconds: float | None


@dataclass(frozen=True, slots=True)
class StatRow:
    """How many runs of a workflow have a status."""

    workflow: str
    status: RunStatus
    count: int


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """What a worker says of itself in each heartbeat of the registry."""

    worker_id: str
    host: str
    pid: int
    lease_seconds: float
    concurrency: int
    workflows: Sequence[str]
    queues: Sequence[str]
    runs_held: int


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A live worker, as the registry has it."""

    worker_id: str
    host: str
    pid: int
    started_at: datetime
    last_seen: datetime
    lease_seconds: float
    concurrency: int
    workflows: list[str]
    queues: list[str]
    runs_held: int


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """Rows one prune batch deleted."""

    runs: int = 0
    events: int = 0
    signals: int = 0


def events_data(events: Sequence[NewEvent]) -> list[dict[str, Any]]:
    """A batch of events as the JSON-ready objects the statements take."""
    return [
        {"seq": e.seq, "type": e.type, "data": e.data, "created_at": e.created_at.isoformat()}
        for e in events
    ]


def events_json(events: Sequence[NewEvent]) -> str:
    """A batch of events as the one jsonb array the statements take."""
    return json.dumps(events_data(events), separators=(",", ":"))


def jsonb_text(value: Any) -> str | None:
    """``value`` as JSON text for a ``::jsonb`` parameter (None stays SQL NULL)."""
    return None if value is None else json.dumps(value, separators=(",", ":"))


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (psycopg's run over several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
