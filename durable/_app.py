"""``App``: the face of pgdurable, a thin facade over the registry (what the decorators
register), the client (every operation on runs) and the worker factory."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ._codec import Codec, make_codec
from ._embedded import resolve_dsn
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
    seconds,
)
from ._registry import Registry, StepDef, WorkflowDef
from ._replayer import Replayer, ReplayReport
from ._schedules import Schedule
from .client import AsyncClient, Client, RunHandle
from .client._ops import queue_spec
from .store import Store, Timeouts
from .worker import Worker

__all__ = ["App"]

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULT_RETRY = RetryPolicy()
#: the ``format`` of :meth:`App.export`'s document
EXPORT_FORMAT = "pgdurable.export/1"


class App:
    """A pgdurable application: workflows, steps, and the database they run on.

    ``dsn``: the argument, else ``$DURABLE_DSN``, else an embedded PostgreSQL server in
    ``$DURABLE_HOME`` (default ``./.durable``) started on first use. ``schema`` holds every
    table. ``codec`` is ``"json"`` (default) or ``"pickle"`` (only for databases that only
    trusted code writes). ``pool_size`` bounds the App's pooled connections; ``timeouts``
    (:class:`durable.Timeouts`) bound how long they wait on a stuck peer.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str = "durable",
        codec: str | Codec = "json",
        pool_size: int = 20,
        timeouts: Timeouts | None = None,
    ) -> None:
        self._dsn = dsn
        self.schema = schema
        self._pool_size = pool_size
        self._timeouts = timeouts
        self._store: Store | None = None
        self._store_lock = threading.Lock()
        self.registry = Registry(make_codec(codec))
        self.client = Client(lambda: self.store, self.registry)
        #: The async client: every client call of the App, awaitable (``await app.aio.start(...)``).
        self.aio = AsyncClient(lambda: self.store, self.registry, pool_size=pool_size)

    def replace(self, *, dsn: str | None = None, schema: str | None = None) -> App:
        """A new App with the same workflows, steps and codec on another database or
        schema (``None`` keeps this App's choice). Nothing is opened."""
        other = App(
            dsn if dsn is not None else self._dsn,
            schema=schema if schema is not None else self.schema,
            codec=self.registry.codec,
            pool_size=self._pool_size,
            timeouts=self._timeouts,
        )
        other.registry = self.registry
        other.client = Client(lambda: other.store, other.registry)
        other.aio = AsyncClient(lambda: other.store, other.registry, pool_size=self._pool_size)
        return other

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store, opened (and the schema migrated) on first use."""
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    dsn = resolve_dsn(self._dsn)
                    store = Store(
                        dsn, schema=self.schema, max_size=self._pool_size, timeouts=self._timeouts
                    ).open()
                    for queue in self.registry.queues.values():  # the declarations so far
                        store.db.perform(store.runs.put_queue(queue_spec(queue)))
                    self._store = store
        return self._store

    @property
    def dsn(self) -> str:
        """The resolved DSN (starts the embedded server if that is the choice)."""
        return self.store.dsn

    @property
    def codec(self) -> Codec:
        """How arguments, results and payloads are stored."""
        return self.registry.codec

    @property
    def workflows(self) -> dict[str, WorkflowDef]:
        """The registered workflows by name."""
        return self.registry.workflows

    @property
    def steps(self) -> dict[str, StepDef]:
        """The registered steps by name."""
        return self.registry.steps

    def close(self) -> None:
        """Release every database connection."""
        self.client.close()
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- decorators ------------------------------------------------------------------------

    def step(
        self,
        name: str | None = None,
        *,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        timeout: float | timedelta | None = None,
    ) -> Callable[[F], F]:
        """Register a step: any function with side effects. Called outside a workflow it
        simply runs; inside a running workflow it returns a command to ``yield``."""
        return self.registry.step(name, retry=retry, timeout=timeout)

    def transaction(
        self, name: str | None = None, *, retry: RetryPolicy | None = _DEFAULT_RETRY
    ) -> Callable[[F], F]:
        """Register a transactional step: its first parameter is a psycopg ``Connection``
        (an ``AsyncConnection`` for ``async def``). The worker runs it inside the
        transaction that records its result, so its database writes and its result commit
        together or not at all: they happen exactly once. Inside a workflow it is yielded
        without the connection (``yield reserve(order_id)``); outside one it is called
        with a connection and simply runs."""
        return self.registry.transaction(name, retry=retry)

    def workflow(
        self,
        name: str | None = None,
        *,
        timeout: float | timedelta | None = None,
        queue: str | None = None,
    ) -> Callable[[F], F]:
        """Register a workflow: a generator function whose first parameter is the
        :class:`durable.Context`. Its name (default: the qualified name) is what the log
        records, so pass the old ``name=`` when renaming the function. ``queue`` is the
        queue its runs go to unless ``start(queue=...)`` says otherwise."""
        return self.registry.workflow(name, timeout=timeout, queue=queue)

    def queue(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        rate_limit: Rate | None = None,
        key_concurrency: int | None = None,
    ) -> Queue:
        """Declare a queue and its limits (``None``: no limit): at most ``concurrency``
        runs of it hold a slot across all workers, ``worker_concurrency`` per worker
        process, ``key_concurrency`` per ``concurrency_key``; ``rate_limit``
        (``durable.Rate(limit, per=seconds)``) bounds its starts in any window. The
        declaration is stored in the database with the App's first operation, and at
        once if the App is already open; the latest declaration wins, and running
        workers follow it without a restart."""
        queue = Queue(
            name,
            concurrency=concurrency,
            worker_concurrency=worker_concurrency,
            rate_limit=rate_limit,
            key_concurrency=key_concurrency,
        )
        self.registry.queue(queue)
        if self._store is not None:
            self.client.set_queue(queue)
        return queue

    def schedule(
        self,
        name: str,
        workflow: Any,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        timezone: str = "UTC",
        args: tuple[Any, ...] | list[Any] = (),
        overlap: str = "skip",
        catchup_window: float | timedelta = timedelta(minutes=1),
        queue: str | None = None,
    ) -> Schedule:
        """Declare a schedule: a run of ``workflow`` (with ``args``) at each tick of
        ``cron`` (5 fields, in ``timezone``) or ``every`` interval (multiples since the
        Unix epoch), exactly once per tick whichever worker fires it, its run id
        ``name@<tick UTC>``. ``overlap`` says what a tick does while the previous run has
        not ended (``skip``, ``buffer_one``, ``buffer_all``, ``cancel_other``,
        ``allow_all``); after downtime, missed ticks younger than ``catchup_window`` are
        started. Workers write the declarations to the database when they start (the
        latest wins). A bad cron expression, time zone or argument raises at once."""
        wf = self.registry.workflow_def(workflow)
        wf.check_args(tuple(args))
        schedule = Schedule(
            name=name,
            workflow=wf.name,
            cron=cron,
            every=seconds(every, "every") if every is not None else None,
            timezone=timezone,
            args=tuple(args),
            overlap=overlap,
            catchup_window=seconds(catchup_window, "catchup_window") or 0.0,
            queue=queue,
        )
        self.codec.encode_args(schedule.args)  # SerializationError now, not at a tick
        self.registry.schedules[name] = schedule
        return schedule

    def pause_schedule(self, name: str) -> None:
        """Stop a schedule from firing until :meth:`resume_schedule`."""
        self.client.pause_schedule(name, True)

    def resume_schedule(self, name: str) -> None:
        """Let a paused schedule fire again, from its next tick (missed ticks are not
        caught up)."""
        self.client.pause_schedule(name, False)

    def trigger_schedule(self, name: str) -> RunHandle:
        """Start a run of the schedule now (its tick: the current second), whatever its
        overlap policy says."""
        return self.client.trigger_schedule(name)

    def backfill_schedule(self, name: str, start: datetime, end: datetime) -> list[RunHandle]:
        """Start one run per tick in ``[start, end)`` that has none yet, whatever the
        overlap policy says; a second backfill of the same range starts nothing."""
        return self.client.backfill_schedule(name, start, end)

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule from the database (its runs stay). A worker whose code still
        declares it writes it again when it starts."""
        self.client.delete_schedule(name)

    def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule in the database, with its next five fire times and last run."""
        return self.client.list_schedules()

    def queues(self) -> list[QueueInfo]:
        """Every queue: its limits, runs waiting for a slot (``pending``), runs holding
        one (``running``), and the busiest keys of a queue with ``key_concurrency``."""
        return self.client.queues()

    # -- starting runs and talking to them --------------------------------------------------

    def start(
        self,
        workflow: Any,
        *args: Any,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        start_at: datetime | None = None,
        delay: float | timedelta | None = None,
        queue: str | None = None,
        priority: int = 0,
        concurrency_key: str | None = None,
        dedup_key: str | None = None,
        conn: Any = None,
    ) -> RunHandle:
        """Start a run of ``workflow`` (the decorated function or its name) with positional
        ``args``. A ``run_id`` or ``idempotency_key`` (per workflow) that exists starts
        nothing and returns the existing run's handle. ``start_at`` (aware datetime) or
        ``delay`` (seconds or timedelta) defer the start. ``queue`` (default: the
        workflow's) limits when it may start; among runs waiting for a queue, lower
        ``priority`` starts first; ``concurrency_key`` is what ``key_concurrency`` counts;
        while a run of the queue with the same ``dedup_key`` has not ended, nothing is
        started and that run's handle is returned. With ``conn`` (a psycopg
        ``Connection`` to the same database) the run is created in that connection's
        transaction: it exists if and only if the caller commits."""
        return self.client.start(
            workflow,
            *args,
            run_id=run_id,
            idempotency_key=idempotency_key,
            start_at=start_at,
            delay=delay,
            queue=queue,
            priority=priority,
            concurrency_key=concurrency_key,
            dedup_key=dedup_key,
            conn=conn,
        )

    def start_many(
        self,
        workflow: Any,
        args_list: Sequence[Sequence[Any]],
        *,
        run_ids: Sequence[str | None] | None = None,
        idempotency_keys: Sequence[str | None] | None = None,
        start_at: datetime | None = None,
        delay: float | timedelta | None = None,
        queue: str | None = None,
        priority: int = 0,
        concurrency_key: str | None = None,
        dedup_keys: Sequence[str | None] | None = None,
        conn: Any = None,
    ) -> list[RunHandle]:
        """Start one run of ``workflow`` per entry of ``args_list`` (each a tuple of
        positional arguments) in one statement and one transaction: far cheaper than a
        loop of :meth:`start` when there are many. The options are those of ``start``;
        ``run_ids``, ``idempotency_keys`` and ``dedup_keys`` are lists with one entry (or
        None) per run. Every argument is checked before anything is written; a run whose
        id or key exists is not started again and its handle is returned in its place.
        Returns the handles in the order of ``args_list``."""
        return self.client.start_many(
            workflow,
            args_list,
            run_ids=run_ids,
            idempotency_keys=idempotency_keys,
            start_at=start_at,
            delay=delay,
            queue=queue,
            priority=priority,
            concurrency_key=concurrency_key,
            dedup_keys=dedup_keys,
            conn=conn,
        )

    def handle(self, run_id: str) -> RunHandle:
        """A handle on an existing run (no database access)."""
        return self.client.handle(run_id)

    def signal(
        self,
        run_id: str,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        conn: Any = None,
    ) -> None:
        """Send a durable signal: FIFO per name, buffered until the run waits for it,
        delivered exactly once. With an ``idempotency_key``, sending it again to the same
        run stores nothing new (retry freely after a lost connection). Raises RunNotActive
        for an ended run, RunNotFound for an unknown one. ``conn``: as for :meth:`start`."""
        self.client.signal(run_id, name, payload, idempotency_key=idempotency_key, conn=conn)

    def emit_event(self, key: str, payload: Any = None, *, conn: Any = None) -> bool:
        """Emit a latched event: the first emission of ``key`` wins (True); later ones
        return False and change nothing. Every ``wait_event(key)`` receives the payload.
        ``conn``: as for :meth:`start`."""
        return self.client.emit_event(key, payload, conn=conn)

    def pause(self, run_id: str) -> None:
        """Stop the run at its next yield (status ``paused``) until :meth:`resume`."""
        self.client.pause(run_id)

    def resume(self, run_id: str) -> None:
        """Let a paused run continue."""
        self.client.resume(run_id)

    def cancel(self, run_id: str, reason: str | None = None) -> None:
        """Raise ``durable.Cancelled`` inside the workflow at its current yield; if it
        propagates, the run ends ``cancelled``. Unfinished children are cancelled too."""
        self.client.cancel(run_id, reason)

    # -- operating -------------------------------------------------------------------------

    def retry(self, run_id: str) -> RunHandle:
        """Continue a ``failed`` or ``blocked`` run from where it stopped: the step that
        failed runs again with fresh attempts; completed steps are not re-executed."""
        return self.client.retry(run_id)

    def rerun(self, run_id: str) -> RunHandle:
        """A new run of the same workflow and arguments (and timeout); its
        ``source_run_id`` is this one."""
        return self.client.rerun(run_id)

    def fork(self, run_id: str, at_seq: int) -> RunHandle:
        """A new run whose log starts as a copy of this run's log up to ``at_seq``, so the
        steps recorded there are not executed again."""
        return self.client.fork(run_id, at_seq)

    def prune(
        self,
        older_than: timedelta | datetime | float,
        *,
        batch: int = 500,
        progress: Callable[[PruneResult], None] | None = None,
        pause: float | timedelta | None = None,
    ) -> PruneResult:
        """Delete runs that ended before the cutoff (a datetime, or an age as timedelta or
        seconds), with all their log rows, in short batches; ``progress`` is called with
        the running totals after each batch. Between batches it waits ``pause`` seconds;
        by default as long as the batch took, so a prune leaves most of the database to
        the workers (``pause=0``: as fast as it can)."""
        return self.client.prune(older_than, batch=batch, progress=progress, pause=pause)

    # -- inspecting ------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunInfo:
        """Everything known about a run: status, arguments, result or error, times,
        lineage."""
        return self.client.get_run(run_id)

    def history(self, run_id: str) -> list[Event]:
        """The run's log in order."""
        return self.client.history(run_id)

    def list_runs(
        self,
        workflow: str | None = None,
        status: str | None = None,
        search: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> RunPage:
        """Runs, newest first, filtered by workflow, status and a search over run id,
        idempotency key and workflow name."""
        return self.client.list_runs(workflow, status, search, limit, offset)

    def export(self, run_id: str) -> dict[str, Any]:
        """The run and its whole log as JSON-compatible data: ``{"format":
        "pgdurable.export/1", "run": {...}, "events": [{seq, type, created_at, data}]}``
        (what ``durable export`` prints; values are as the codec stored them)."""
        run = self.get_run(run_id)
        events = self.history(run_id)
        return {
            "format": EXPORT_FORMAT,
            "run": run.model_dump(mode="json", exclude={"args", "result"}, fallback=repr),
            "events": [e.model_dump(mode="json") for e in events],
        }

    def workers(self) -> list[WorkerInfo]:
        """Live workers: each heartbeats its row; one that stops heartbeating for longer
        than its lease drops out."""
        return self.client.workers()

    def stats(self) -> dict[str, Any]:
        """Run counts: ``{"total", "by_status", "by_workflow": {workflow: {status: n}}}``."""
        return self.client.stats()

    def timeseries(
        self,
        granularity: str = "hour",
        since: datetime | None = None,
        until: datetime | None = None,
        workflow: str | None = None,
    ) -> list[Bucket]:
        """Per ``granularity`` (``"hour"`` or ``"day"``, UTC) bucket of ``[since, until)``
        (default: the last 24 buckets up to now), empty ones included: runs started,
        completed and failed in it, and the p50/p95 duration of the runs that ended in it."""
        return self.client.timeseries(granularity, since, until, workflow)

    def check_replay(self, *, workflow: str | None = None, limit: int = 1000) -> ReplayReport:
        """Replay the logs of the newest ``limit`` runs (of ``workflow``) against the code
        registered now, without executing or writing anything: the check to run before
        deploying. Runs of workflows this App does not register are counted as skipped."""
        if workflow is not None:
            self.registry.workflow_def(workflow)  # raises WorkflowNotFound naming the known
        return Replayer(self.registry).check_runs(self.client, workflow=workflow, limit=limit)

    # -- workers ---------------------------------------------------------------------------

    def worker(self, *, concurrency: int = 16, **options: Any) -> Worker:
        """A worker running in a background thread; use it as a context manager."""
        return Worker(self, concurrency=concurrency, **options)

    def run_worker(self, *, concurrency: int = 16, **options: Any) -> None:
        """Run a worker in this thread until SIGINT/SIGTERM: no new work is claimed,
        running steps finish and are recorded, leases are released."""
        Worker(self, concurrency=concurrency, **options).run(install_signal_handlers=True)

    def resolve_run_id(self, run_id_or_prefix: str) -> str:
        """The run id of the run named by ``run_id_or_prefix``: that id if a run has it,
        else the one run whose id starts with it (at least 4 characters; a prefix shared
        by a run and its children, ``<run id>:<pos>``, names the run, and ``<prefix>:<pos>``
        names a child). Raises RunNotFound if no run matches, AmbiguousRunId (naming up
        to five) if several do."""
        return self.client.resolve_run_id(run_id_or_prefix)
