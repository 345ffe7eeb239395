"""``AsyncClient`` (``app.aio``): every client call of an App, awaitable, on psycopg's
async connections and an async pool, never blocking the event loop.

It runs the same operations (``_ops``) as the sync :class:`~durable.client.Client`; only
the executor differs. Waiting for a result uses one LISTEN connection per event loop,
shared by every ``await handle.result()`` on it, plus a safety poll, as the sync client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from .. import telemetry
from .._models import Bucket, Event, PruneResult, QueueInfo, RunInfo, RunPage, WorkerInfo
from .._registry import Registry
from ..replay.errors import DurableError
from ..replay.vocabulary import TERMINAL_STATUSES, RunStatus
from ..store import AsyncDatabase, AsyncListener, RunRow, Store, Unit
from ._client import IDLE_POLL
from ._ops import Op, Ops, Pause, timeout_message
from ._outage import Outage

__all__ = ["AsyncClient", "AsyncRunHandle"]

log = logging.getLogger("durable")

T = TypeVar("T")

_SAFETY_POLL = 2.0


async def arun_op(op: Op[T], perform: Callable[[Unit[Any]], Awaitable[Any]]) -> T:
    """Drive an operation with an async executor (see ``run_op``)."""
    try:
        unit = next(op)
        while True:
            if isinstance(unit, Pause):
                if unit.seconds > 0:
                    await asyncio.sleep(unit.seconds)
                unit = op.send(None)
                continue
            try:
                value = await perform(unit)
            except Exception as exc:
                unit = op.throw(exc)
                continue
            unit = op.send(value)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        op.close()


class AsyncRunHandle:
    """A reference to one run, for async code: ``await h.result()``, ``await h.status()``,
    ``await h.info()``. ``created`` as on :class:`~durable.RunHandle`."""

    def __init__(self, client: AsyncClient, run_id: str, *, created: bool = False) -> None:
        self._client = client
        self.run_id = run_id
        self.created = created

    def __repr__(self) -> str:
        return f"AsyncRunHandle({self.run_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncRunHandle) and other.run_id == self.run_id

    def __hash__(self) -> int:
        return hash(self.run_id)

    async def status(self) -> str:
        """The run's current status."""
        return await self._client.status(self.run_id)

    async def info(self) -> RunInfo:
        """Everything known about the run (see :meth:`durable.App.get_run`)."""
        return await self._client.get_run(self.run_id)

    async def result(self, timeout: float | None = None) -> Any:
        """Wait until the run ends; return its result or raise RunFailed, RunCancelled,
        RunTimedOut, or TimeoutError when ``timeout`` seconds pass first."""
        return await self._client.wait_result(self.run_id, timeout)


class AsyncClient:
    """The async client of an App (``app.aio``); see the module doc.

    ``store`` gives the App's (sync) store on first use: resolving the DSN may start the
    embedded server and migrate the schema, once per process, which runs in a worker
    thread (``asyncio.to_thread``) so the event loop does not wait for it. Everything
    after that is async I/O.
    """

    def __init__(
        self, store: Callable[[], Store], registry: Registry, *, pool_size: int = 10
    ) -> None:
        self._store_factory = store
        self._registry = registry
        self._pool_size = pool_size
        self._db: AsyncDatabase | None = None
        self._ops: Ops | None = None
        self._waiters: dict[asyncio.AbstractEventLoop, _AsyncWaiter] = {}
        #: see :attr:`Client.idle_hook`
        self.idle_hook: Callable[[], None] | None = None

    async def _ready(self) -> tuple[AsyncDatabase, Ops]:
        if self._db is None or self._ops is None:
            store = await asyncio.to_thread(self._store_factory)
            if self._db is None or self._ops is None:  # not made by a concurrent first call
                self._ops = Ops(store.runs, self._registry)
                self._db = AsyncDatabase(store.db, max_size=self._pool_size)
        return self._db, self._ops

    async def _run(self, make: Callable[[Ops], Op[T]], conn: Any = None) -> T:
        db, ops = await self._ready()
        if conn is None:
            return await arun_op(make(ops), db.perform)
        return await arun_op(make(ops), lambda unit: db.perform_on(conn, unit))

    async def aclose(self) -> None:
        """Stop this loop's result listener and close the async pool."""
        loop = asyncio.get_running_loop()
        waiter = self._waiters.pop(loop, None)
        if waiter is not None:
            await waiter.close()
        if self._db is not None:
            await self._db.close()

    def abandon(self) -> None:
        """Close the async pool from outside its event loop (the test env, at its end;
        the loops that used it may be gone)."""
        waiters, self._waiters = self._waiters, {}
        for loop, waiter in waiters.items():
            if not loop.is_closed() and not loop.is_running():
                with contextlib.suppress(Exception):
                    loop.run_until_complete(waiter.close())
        if self._db is not None:
            self._db.abandon()

    # -- starting runs -----------------------------------------------------------------------

    async def start(
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
    ) -> AsyncRunHandle:
        """See :meth:`durable.App.start`; ``conn`` is a psycopg ``AsyncConnection``."""
        name = telemetry.name_of(workflow)
        with telemetry.start_span(name) as span:
            created = await self._run(
                lambda ops: ops.start(
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
        return AsyncRunHandle(self, created.run_id, created=created.created)

    async def start_many(
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
    ) -> list[AsyncRunHandle]:
        """See :meth:`durable.App.start_many`."""
        name = telemetry.name_of(workflow)
        with telemetry.start_span(name) as span:
            created = await self._run(
                lambda ops: ops.start_many(
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
        return [AsyncRunHandle(self, c.run_id, created=c.created) for c in created]

    def handle(self, run_id: str) -> AsyncRunHandle:
        """A handle on an existing run (no database access)."""
        return AsyncRunHandle(self, run_id)

    # -- talking to runs ---------------------------------------------------------------------

    async def signal(
        self,
        run_id: str,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        conn: Any = None,
    ) -> None:
        """See :meth:`durable.App.signal`."""
        await self._run(
            lambda ops: ops.signal(run_id, name, payload, idempotency_key=idempotency_key), conn
        )

    async def emit_event(self, key: str, payload: Any = None, *, conn: Any = None) -> bool:
        """See :meth:`durable.App.emit_event`."""
        return await self._run(lambda ops: ops.emit_event(key, payload), conn)

    async def pause(self, run_id: str) -> None:
        """See :meth:`durable.App.pause`."""
        await self._run(lambda ops: ops.control(run_id, "pause"))

    async def resume(self, run_id: str) -> None:
        """See :meth:`durable.App.resume`."""
        await self._run(lambda ops: ops.control(run_id, "resume"))

    async def cancel(self, run_id: str, reason: str | None = None) -> None:
        """See :meth:`durable.App.cancel`."""
        await self._run(lambda ops: ops.control(run_id, "cancel", reason))

    # -- operating ---------------------------------------------------------------------------

    async def retry(self, run_id: str) -> AsyncRunHandle:
        """See :meth:`durable.App.retry`."""
        return self.handle(await self._run(lambda ops: ops.retry(run_id)))

    async def rerun(self, run_id: str) -> AsyncRunHandle:
        """See :meth:`durable.App.rerun`."""
        new_id = await self._run(lambda ops: ops.rerun(run_id))
        return AsyncRunHandle(self, new_id, created=True)

    async def fork(self, run_id: str, at_seq: int) -> AsyncRunHandle:
        """See :meth:`durable.App.fork`."""
        new_id = await self._run(lambda ops: ops.fork(run_id, at_seq))
        return AsyncRunHandle(self, new_id, created=True)

    async def prune(
        self,
        older_than: timedelta | datetime | float,
        *,
        batch: int = 500,
        progress: Callable[[PruneResult], None] | None = None,
        pause: float | timedelta | None = None,
    ) -> PruneResult:
        """See :meth:`durable.App.prune`."""
        return await self._run(
            lambda ops: ops.prune(older_than, batch=batch, progress=progress, pause=pause)
        )

    # -- reading -----------------------------------------------------------------------------

    async def status(self, run_id: str) -> str:
        """The run's current status."""
        return await self._run(lambda ops: ops.status(run_id))

    async def get_run(self, run_id: str) -> RunInfo:
        """See :meth:`durable.App.get_run`."""
        return await self._run(lambda ops: ops.get_run(run_id))

    async def history(self, run_id: str) -> list[Event]:
        """See :meth:`durable.App.history`."""
        return await self._run(lambda ops: ops.history(run_id))

    async def list_runs(
        self,
        workflow: str | None = None,
        status: str | None = None,
        search: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> RunPage:
        """See :meth:`durable.App.list_runs`."""
        return await self._run(lambda ops: ops.list_runs(workflow, status, search, limit, offset))

    async def queues(self) -> list[QueueInfo]:
        """See :meth:`durable.App.queues`."""
        return await self._run(lambda ops: ops.queues())

    async def workers(self) -> list[WorkerInfo]:
        """See :meth:`durable.App.workers`."""
        return await self._run(lambda ops: ops.workers())

    async def stats(self) -> dict[str, Any]:
        """See :meth:`durable.App.stats`."""
        return await self._run(lambda ops: ops.stats())

    async def timeseries(
        self,
        granularity: str = "hour",
        since: datetime | None = None,
        until: datetime | None = None,
        workflow: str | None = None,
    ) -> list[Bucket]:
        """See :meth:`durable.App.timeseries`."""
        return await self._run(lambda ops: ops.timeseries(granularity, since, until, workflow))

    @contextlib.asynccontextmanager
    async def notifications(self) -> AsyncIterator[AsyncListener]:
        """A dedicated connection LISTENing to what workers and clients already notify
        (starts, signals, controls, watched runs' ends): hints that something changed,
        for live views (the dashboard); nothing is notified for them alone."""
        db, _ = await self._ready()
        listener = await db.listener(db.db.work_channel, db.db.done_channel)
        try:
            yield listener
        finally:
            await listener.close()

    async def resolve_run_id(self, run_id_or_prefix: str) -> str:
        """See :meth:`durable.App.resolve_run_id`."""
        return await self._run(lambda ops: ops.resolve_run_id(run_id_or_prefix))

    # -- results -----------------------------------------------------------------------------

    async def wait_result(self, run_id: str, timeout: float | None) -> Any:
        """See :meth:`AsyncRunHandle.result`: the notification of the run's end, with a
        status check every couple of seconds; an outage only delays it."""
        db, ops = await self._ready()
        runs = ops.runs
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = self._waiter(db)
        event = await waiter.register(run_id)

        outage = Outage(run_id, deadline, timeout)

        async def read(unit: Unit[T]) -> T:
            return await outage.aretry(lambda: db.perform(unit))

        try:
            status: RunStatus = await read(runs.watch(run_id))
            while status not in TERMINAL_STATUSES:
                hook = self.idle_hook
                wait = _SAFETY_POLL if hook is None else IDLE_POLL
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(timeout_message(run_id, timeout, status))
                    wait = min(wait, left)
                try:
                    await asyncio.wait_for(event.wait(), wait)
                    event.clear()
                except TimeoutError:
                    if hook is not None:
                        await asyncio.to_thread(hook)  # the test env may skip time
                status = await read(runs.status(run_id))
            row: RunRow = await read(runs.get_run(run_id))
        finally:
            waiter.unregister(run_id, event)
        return ops.outcome(row)

    def _waiter(self, db: AsyncDatabase) -> _AsyncWaiter:
        loop = asyncio.get_running_loop()
        waiter = self._waiters.get(loop)
        if waiter is None:
            for old in [other for other in self._waiters if other.is_closed()]:
                del self._waiters[old]
            waiter = self._waiters[loop] = _AsyncWaiter(db)
        return waiter


class _AsyncWaiter:
    """One LISTEN connection per event loop, waking the tasks awaiting a run's end."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._db = db
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def register(self, run_id: str) -> asyncio.Event:
        """An event set when ``run_id`` is reported ended (call before checking status)."""
        event = asyncio.Event()
        self._waiting.setdefault(run_id, set()).add(event)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._listen(), name="durable-results"
            )
        # Briefly wait for LISTEN to be active; without it the poll still works.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 5.0)
        return event

    def unregister(self, run_id: str, event: asyncio.Event) -> None:
        """Stop waiting for ``run_id`` with this event."""
        events = self._waiting.get(run_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._waiting[run_id]

    async def close(self) -> None:
        """Stop the listener task."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                listener = await self._db.listener(self._db.db.done_channel)
            except DurableError as exc:
                failures += 1
                delay = min(0.1 * 2**failures, 5.0)
                log.debug("result listener cannot connect (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            self._ready.set()
            try:
                while True:
                    for run_id in await listener.wait(5.0):
                        for event in self._waiting.get(run_id, ()):
                            event.set()
            except DurableError as exc:
                log.debug("result listener reconnecting after: %s", exc)
                self._ready.clear()
                for events in self._waiting.values():
                    for event in events:
                        event.set()
            finally:
                self._ready.clear()
                await listener.close()
