"""Public value types: retry policy, run information, history events, pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "Event",
    "PruneResult",
    "RetryPolicy",
    "RunInfo",
    "RunPage",
    "WorkerInfo",
    "seconds",
]


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing step is retried. Attempts and backoff are recorded in the log, so a
    crash during backoff neither resets the count nor shortens the wait.

    ``max_attempts=1`` means no retry. Exceptions whose type is in ``non_retryable`` fail
    the step at once. The delay before attempt ``n+1`` is
    ``min(initial_interval * backoff ** (n - 1), max_interval)`` seconds.
    """

    max_attempts: int = 3
    initial_interval: float = 1.0
    backoff: float = 2.0
    max_interval: float = 60.0
    non_retryable: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.initial_interval < 0 or self.max_interval < 0 or self.backoff < 1:
            raise ValueError(
                "RetryPolicy needs initial_interval >= 0, max_interval >= 0 and backoff >= 1"
            )
        object.__setattr__(self, "non_retryable", tuple(self.non_retryable))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.initial_interval * self.backoff ** (attempt - 1), self.max_interval))

    def retries(self, error: BaseException, attempt: int) -> bool:
        """Whether a failure of attempt ``attempt`` with ``error`` is retried."""
        if attempt >= self.max_attempts:
            return False
        return not (self.non_retryable and isinstance(error, self.non_retryable))


class RunInfo(BaseModel):
    """What pgdurable knows about a run."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    workflow: str
    status: str
    args: list[Any] | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    custom_status: Any = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    parent_run_id: str | None = None
    source_run_id: str | None = None
    idempotency_key: str | None = None
    queue: str | None = None
    priority: int = 0
    concurrency_key: str | None = None
    #: for a pending run, one line saying why it has not started; None otherwise
    pending_reason: str | None = None


@dataclass(frozen=True)
class Rate:
    """A rate limit: at most ``limit`` starts in any window of ``per`` seconds."""

    limit: int
    per: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"Rate limit must be a positive int, not {self.limit!r}")
        per = seconds(self.per, "Rate per")
        if per is None or per <= 0:
            raise ValueError(f"Rate per must be a positive number of seconds, not {self.per!r}")
        object.__setattr__(self, "per", per)

    def __str__(self) -> str:
        return f"{self.limit}/{self.per:g}s"


@dataclass(frozen=True)
class Queue:
    """A queue's declaration (see :meth:`App.queue`); ``None`` means no limit."""

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit: Rate | None = None
    key_concurrency: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a queue needs a name (a non-empty str), not {self.name!r}")
        for what in ("concurrency", "worker_concurrency", "key_concurrency"):
            value = getattr(self, what)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(
                    f"queue {self.name!r}: {what} must be a positive int or None, not {value!r}"
                )
        if self.rate_limit is not None and not isinstance(self.rate_limit, Rate):
            raise TypeError(
                f"queue {self.name!r}: rate_limit must be a durable.Rate, such as "
                f"durable.Rate(100, per=60), not {self.rate_limit!r}"
            )

    def describe(self) -> str:
        """The limits in a few words (for logs and the CLI)."""
        return limits_text(
            self.concurrency, self.worker_concurrency, self.key_concurrency, self.rate_limit
        )


def limits_text(
    concurrency: int | None,
    worker_concurrency: int | None,
    key_concurrency: int | None,
    rate: Rate | None,
) -> str:
    """A queue's limits in a few words: ``concurrency 10, per key 1, rate 100/60s``."""
    parts = [
        f"{what} {value}"
        for what, value in (
            ("concurrency", concurrency),
            ("per worker", worker_concurrency),
            ("per key", key_concurrency),
            ("rate", rate),
        )
        if value is not None
    ]
    return ", ".join(parts) or "no limits"


class QueueInfo(BaseModel):
    """A queue's limits and load (see :meth:`App.queues`)."""

    model_config = ConfigDict(frozen=True)

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit: Rate | None = None
    key_concurrency: int | None = None
    #: runs waiting for a slot
    pending: int = 0
    #: runs holding a slot
    running: int = 0
    #: the keys with the most runs holding a slot: ``{key: {"running": n, "pending": m}}``
    busiest_keys: dict[str, dict[str, int]] = {}


class ScheduleInfo(BaseModel):
    """A schedule as stored (see :meth:`App.list_schedules`)."""

    model_config = ConfigDict(frozen=True)

    name: str
    workflow: str
    cron: str | None = None
    #: the interval in seconds, for an ``every`` schedule
    every: float | None = None
    timezone: str = "UTC"
    paused: bool = False
    overlap: str = "skip"
    catchup_window: float = 60.0
    queue: str | None = None
    #: the next ticks (5; none while paused)
    next_fire_times: list[datetime] = []
    last_run_id: str | None = None
    #: ticks waiting for the previous run to end (overlap buffer_one / buffer_all)
    buffered: int = 0


class Event(BaseModel):
    """One entry of a run's log."""

    model_config = ConfigDict(frozen=True)

    seq: int
    type: str
    created_at: datetime
    #: an object for every event pgdurable writes (anything, for a hand-edited log)
    data: Any


class RunPage(BaseModel):
    """A page of :meth:`App.list_runs`, newest first."""

    runs: list[RunInfo]
    total: int


class WorkerInfo(BaseModel):
    """A live worker (see :meth:`App.workers`)."""

    model_config = ConfigDict(frozen=True)

    worker_id: str
    host: str
    pid: int
    started_at: datetime
    last_seen: datetime
    concurrency: int
    workflows: list[str]
    queues: list[str]
    runs_held: int


class Bucket(BaseModel):
    """One bucket of :meth:`App.timeseries`: runs started (created), completed and failed
    in ``[start, start + granularity)``, and the duration percentiles (creation to end)
    of the runs that ended in it (None when none did)."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    started: int
    completed: int
    failed: int
    p50_seconds: float | None
    p95_seconds: float | None


class PruneResult(BaseModel):
    """What :meth:`App.prune` deleted."""

    runs: int = 0
    events: int = 0
    signals: int = 0


def seconds(value: float | timedelta | None, what: str) -> float | None:
    """A duration given as seconds or a timedelta, validated."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be seconds (a number) or a timedelta, not {value!r}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return float(value)
