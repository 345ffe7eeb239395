"""``Client``: every client-side operation of an App, whether or not a worker runs.

The operations themselves live in ``_ops`` (shared with the async client); this module
runs their units of work on the sync pool, or on the caller's connection for ``conn=``,
and waits for results on the LISTEN/NOTIFY hint plus a safety poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from .. import telemetry
from .._clock import utcnow
from .._models import (
    Bucket,
    Event,
    PruneResult,
    Queue,
    QueueInfo,
    RunInfo,
    RunPage,
    ScheduleInfo,
    WorkerInfo,
)
from .._registry import Registry
from .._schedules import Schedule
from ..replay.vocabulary import TERMINAL_STATUSES
from ..store import RunRow, ScheduleNotFound, Store, Unit
from ._create import RunCreator
from ._handle import RunHandle
from ._ops import Op, Ops, Pause, timeout_message
from ._outage import Outage
from ._scheduling import Scheduling
from ._waiter import ResultWaiter

__all__ = ["Client"]

log = logging.getLogger("durable")

T = TypeVar("T")

#: how often a wait inside a test env with auto-skip looks whether to skip time
IDLE_POLL = 0.02
_SAFETY_POLL = 2.0  # seconds between status checks while waiting for a notification


def run_op(op: Op[T], perform: Callable[[Unit[Any]], Any]) -> T:
    """Drive an operation: run each unit it yields with ``perform``, send the result back
    (or throw the error in), until it returns."""
    try:
        unit = next(op)
        while True:
            if isinstance(unit, Pause):
                if unit.seconds > 0:
                    time.sleep(unit.seconds)
                unit = op.send(None)
                continue
            try:
                value = perform(unit)
            except Exception as exc:
                unit = op.throw(exc)
                continue
            unit = op.send(value)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        op.close()


class Client:
    """Starts runs, talks to them and reads them back, through the store.

    ``store`` is called for the store on first use (so the DSN is resolved, and the
    embedded server started, only when something needs the database).
    """

    def __init__(self, store: Callable[[], Store], registry: Registry) -> None:
        self._store = store
        self._registry = registry
        self._lock = threading.Lock()
        self._waiter: ResultWaiter | None = None
        self._ops: Ops | None = None
        #: set by a test env with auto-skip: called while ``result()`` waits and nothing
        #: happened for a moment (it may skip the virtual clock ahead)
        self.idle_hook: Callable[[], None] | None = None

    def close(self) -> None:
        """Stop the shared result listener."""
        with self._lock:
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.close()

    @property
    def ops(self) -> Ops:
        """The operations over this client's store."""
        if self._ops is None:
            self._ops = Ops(self._store().runs, self._registry)
        return self._ops

    def _run(self, op: Op[T], conn: Any = None) -> T:
        db = self._store().db
        if conn is None:
            return run_op(op, db.perform)
        return run_op(op, lambda unit: db.perform_on(conn, unit))

    # -- starting runs -----------------------------------------------------------------------

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
        """See :meth:`durable.App.start`."""
        name = telemetry.name_of(workflow)
        with telemetry.start_span(name) as span:
            created = self._run(
                self.ops.start(
                    workflow,
                    args,
                    run_id=run_id,
                    idempotency_key=idempotency_key,
                    start_at=start_at,
                    delay=delay,
                    queue=queue,
                    priority=priority,
                    concurrency_key=concurrency_key,
                    dedup_key=dedup_key,
                ),
                conn,
            )
            telemetry.record_start(span, name, created.run_id, created.created)
        return RunHandle(self, created.run_id, created=created.created)

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
        """See :meth:`durable.App.start_many`."""
        name = telemetry.name_of(workflow)
        with telemetry.start_span(name) as span:
            created = self._run(
                self.ops.start_many(
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
                ),
                conn,
            )
            for made in created:
                telemetry.record_start(span, name, made.run_id, made.created)
        return [RunHandle(self, c.run_id, created=c.created) for c in created]

    def handle(self, run_id: str) -> RunHandle:
        """A handle on an existing run (no database access)."""
        return RunHandle(self, run_id)

    # -- talking to runs ---------------------------------------------------------------------

    def signal(
        self,
        run_id: str,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        conn: Any = None,
    ) -> None:
        """See :meth:`durable.App.signal`."""
        self._run(self.ops.signal(run_id, name, payload, idempotency_key=idempotency_key), conn)

    def emit_event(self, key: str, payload: Any = None, *, conn: Any = None) -> bool:
        """See :meth:`durable.App.emit_event`."""
        return self._run(self.ops.emit_event(key, payload), conn)

    def pause(self, run_id: str) -> None:
        """See :meth:`durable.App.pause`."""
        self._run(self.ops.control(run_id, "pause"))

    def resume(self, run_id: str) -> None:
        """See :meth:`durable.App.resume`."""
        self._run(self.ops.control(run_id, "resume"))

    def cancel(self, run_id: str, reason: str | None = None) -> None:
        """See :meth:`durable.App.cancel`."""
        self._run(self.ops.control(run_id, "cancel", reason))

    # -- operating ---------------------------------------------------------------------------

    def retry(self, run_id: str) -> RunHandle:
        """See :meth:`durable.App.retry`."""
        return self.handle(self._run(self.ops.retry(run_id)))

    def rerun(self, run_id: str) -> RunHandle:
        """See :meth:`durable.App.rerun`."""
        return RunHandle(self, self._run(self.ops.rerun(run_id)), created=True)

    def fork(self, run_id: str, at_seq: int) -> RunHandle:
        """See :meth:`durable.App.fork`."""
        return RunHandle(self, self._run(self.ops.fork(run_id, at_seq)), created=True)

    def prune(
        self,
        older_than: timedelta | datetime | float,
        *,
        batch: int = 500,
        progress: Callable[[PruneResult], None] | None = None,
        pause: float | timedelta | None = None,
    ) -> PruneResult:
        """See :meth:`durable.App.prune`."""
        return self._run(self.ops.prune(older_than, batch=batch, progress=progress, pause=pause))

    # -- results -----------------------------------------------------------------------------

    def status(self, run_id: str) -> str:
        """The run's current status."""
        return self._run(self.ops.status(run_id))

    def wait_result(self, run_id: str, timeout: float | None) -> Any:
        """Block until the run ends; its result, or the error its end stands for. A
        database restart or a short outage does not interrupt the wait: it reconnects
        and keeps waiting until ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        store = self._store()
        runs, perform = store.runs, store.db.perform
        waiter = self._result_waiter()
        event = waiter.register(run_id)
        outage = Outage(run_id, deadline, timeout)
        try:
            # after register: no end slips through
            status = outage.retry(lambda: perform(runs.watch(run_id)))
            while status not in TERMINAL_STATUSES:
                hook = self.idle_hook
                # the notification usually comes first; a test env looks more often
                wait = _SAFETY_POLL if hook is None else IDLE_POLL
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(timeout_message(run_id, timeout, status))
                    wait = min(wait, left)
                if event.wait(wait):
                    event.clear()
                elif hook is not None:
                    hook()  # nothing happened: the test env may skip time
                status = outage.retry(lambda: perform(runs.status(run_id)))
            row: RunRow = outage.retry(lambda: perform(runs.get_run(run_id)))
        finally:
            waiter.unregister(run_id, event)
        return self.ops.outcome(row)

    def _result_waiter(self) -> ResultWaiter:
        store = self._store()
        with self._lock:
            if self._waiter is None:
                self._waiter = ResultWaiter(lambda: store.listener(store.done_channel))
            return self._waiter

    # -- inspecting --------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunInfo:
        """See :meth:`durable.App.get_run`."""
        return self._run(self.ops.get_run(run_id))

    def history(self, run_id: str) -> list[Event]:
        """See :meth:`durable.App.history`."""
        return self._run(self.ops.history(run_id))

    def list_runs(
        self,
        workflow: str | None = None,
        status: str | None = None,
        search: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> RunPage:
        """See :meth:`durable.App.list_runs`."""
        return self._run(self.ops.list_runs(workflow, status, search, limit, offset))

    def queues(self) -> list[QueueInfo]:
        """See :meth:`durable.App.queues`."""
        return self._run(self.ops.queues())

    def set_queue(self, queue: Queue) -> Queue:
        """Write a queue's declaration (the latest wins)."""
        return self._run(self.ops.set_queue(queue))

    def update_queue(self, name: str, **changes: Any) -> Queue:
        """Change some limits of a stored queue (``durable queues set``)."""
        return self._run(self.ops.update_queue(name, changes))

    # -- schedules ---------------------------------------------------------------------------

    def scheduling(self) -> Scheduling:
        """The schedules over this client's store."""
        store = self._store()
        return Scheduling(store.schedules, RunCreator(store.runs, self._registry), self._registry)

    def put_schedule(self, schedule: Schedule) -> None:
        """Write a schedule's declaration (the latest wins)."""
        self._store().db.perform(self.scheduling().put(schedule))

    def pause_schedule(self, name: str, paused: bool = True) -> None:
        """See :meth:`durable.App.pause_schedule`."""
        self._store().db.perform(self.scheduling().set_paused(name, paused))

    def trigger_schedule(self, name: str) -> RunHandle:
        """See :meth:`durable.App.trigger_schedule`."""
        return RunHandle(self, self._store().db.perform(self.scheduling().trigger(name)))

    def backfill_schedule(self, name: str, start: datetime, end: datetime) -> list[RunHandle]:
        """See :meth:`durable.App.backfill_schedule`."""
        created = self._store().db.perform(self.scheduling().backfill(name, start, end))
        return [RunHandle(self, run_id, created=True) for run_id in created]

    def delete_schedule(self, name: str) -> None:
        """See :meth:`durable.App.delete_schedule`."""
        store = self._store()
        if not store.db.perform(store.schedules.delete(name)):
            raise ScheduleNotFound(name)

    def list_schedules(self) -> list[ScheduleInfo]:
        """See :meth:`durable.App.list_schedules`."""
        store = self._store()
        rows = store.db.perform(store.schedules.all())
        scheduling = self.scheduling()
        now = utcnow()
        return [scheduling.info(row, now) for row in rows]

    def workers(self) -> list[WorkerInfo]:
        """See :meth:`durable.App.workers`."""
        return self._run(self.ops.workers())

    def stats(self) -> dict[str, Any]:
        """See :meth:`durable.App.stats`."""
        return self._run(self.ops.stats())

    def timeseries(
        self,
        granularity: str = "hour",
        since: datetime | None = None,
        until: datetime | None = None,
        workflow: str | None = None,
    ) -> list[Bucket]:
        """See :meth:`durable.App.timeseries`."""
        return self._run(self.ops.timeseries(granularity, since, until, workflow))

    def resolve_run_id(self, run_id_or_prefix: str) -> str:
        """See :meth:`durable.App.resolve_run_id`."""
        return self._run(self.ops.resolve_run_id(run_id_or_prefix))
