"""``Client``: every client-side operation of an App, whether or not a worker runs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from .._clock import utcnow
from .._errors import InvalidArgument, RunCancelled, RunTimedOut
from .._models import Event, PruneResult, RunInfo, RunPage, WorkerInfo, seconds
from .._registry import Registry
from ..replay.errors import RunFailed
from ..replay.vocabulary import TERMINAL_STATUSES, RunStatus
from ..store import DatabaseUnavailable, RunRow, RunStateError, Store
from ._create import RunCreator
from ._handle import RunHandle
from ._waiter import ResultWaiter

__all__ = ["Client"]

log = logging.getLogger("durable")

T = TypeVar("T")

_SAFETY_POLL = 2.0
_STATUSES = tuple(
    str(s) for s in RunStatus
)  # seconds between status checks while waiting for a notification


class _Outage:
    """Retries a read while the database is unavailable, until the caller's deadline."""

    def __init__(self, run_id: str, deadline: float | None, timeout: float | None) -> None:
        self._run_id = run_id
        self._deadline = deadline
        self._timeout = timeout

    def retry(self, read: Callable[[], T]) -> T:
        delay = 0.1
        while True:
            try:
                return read()
            except DatabaseUnavailable as exc:
                now = time.monotonic()
                if self._deadline is not None and now + delay >= self._deadline:
                    raise TimeoutError(
                        f"run {self._run_id!r}: no result within {self._timeout:g}s; the "
                        f"database was unavailable ({exc})"
                    ) from exc
                log.info("waiting for run %s: %s; retrying in %.1fs", self._run_id, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)


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

    def close(self) -> None:
        """Stop the shared result listener."""
        with self._lock:
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.close()

    @property
    def _codec(self) -> Any:
        return self._registry.codec

    def _creator(self) -> RunCreator:
        return RunCreator(self._store().runs, self._registry)

    # -- starting runs -----------------------------------------------------------------------

    def start(
        self,
        workflow: Any,
        *args: Any,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        start_at: datetime | None = None,
        delay: float | timedelta | None = None,
    ) -> RunHandle:
        """See :meth:`durable.App.start`."""
        wf = self._registry.workflow_def(workflow)
        wf.check_args(args)
        if start_at is not None and delay is not None:
            raise ValueError("pass start_at or delay, not both")
        if start_at is not None and (
            not isinstance(start_at, datetime) or start_at.utcoffset() is None
        ):
            raise ValueError("start_at must be an aware datetime (with a timezone)")
        delay_s = seconds(delay, "delay")
        encoded = self._codec.encode_args(args)
        now = utcnow()
        begin = start_at.astimezone(UTC) if start_at is not None else now
        if delay_s:
            begin = now + timedelta(seconds=delay_s)
        created = self._creator().start(
            wf, encoded, run_id=run_id, idempotency_key=idempotency_key, begin=begin, now=now
        )
        if not created.created and created.workflow != wf.name:
            raise RunStateError(
                f"run {created.run_id!r} exists and is a run of workflow {created.workflow!r}, "
                f"not {wf.name!r}; choose another run_id",
                run_id=created.run_id,
            )
        return RunHandle(self, created.run_id, created=created.created)

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
    ) -> None:
        """See :meth:`durable.App.signal`."""
        encoded = self._codec.encode(payload)
        try:
            self._store().runs.signal(run_id, name, encoded, idempotency_key=idempotency_key)
        except DatabaseUnavailable as exc:
            hint = (
                "send it again with the same idempotency_key: it is stored at most once"
                if idempotency_key is not None
                else "pass an idempotency_key to send it again safely"
            )
            raise DatabaseUnavailable(
                f"{exc}; the signal {name!r} to run {run_id} may or may not have been stored: "
                f"{hint}"
            ) from exc

    def emit_event(self, key: str, payload: Any = None) -> bool:
        """See :meth:`durable.App.emit_event`."""
        return self._store().runs.emit_event(key, self._codec.encode(payload))

    def pause(self, run_id: str) -> None:
        """See :meth:`durable.App.pause`."""
        self._store().runs.control(run_id, "pause", None, utcnow())

    def resume(self, run_id: str) -> None:
        """See :meth:`durable.App.resume`."""
        self._store().runs.control(run_id, "resume", None, utcnow())

    def cancel(self, run_id: str, reason: str | None = None) -> None:
        """See :meth:`durable.App.cancel`."""
        self._store().runs.control(run_id, "cancel", reason, utcnow())

    # -- operating ---------------------------------------------------------------------------

    def retry(self, run_id: str) -> RunHandle:
        """See :meth:`durable.App.retry`."""
        self._store().runs.retry(run_id, utcnow())
        return self.handle(run_id)

    def rerun(self, run_id: str) -> RunHandle:
        """See :meth:`durable.App.rerun`."""
        source = self._store().runs.get_run(run_id)
        created = self._creator().rerun(source, utcnow())
        return RunHandle(self, created.run_id, created=True)

    def fork(self, run_id: str, at_seq: int) -> RunHandle:
        """See :meth:`durable.App.fork`."""
        runs = self._store().runs
        source = runs.get_run(run_id)
        if at_seq < source.history_start or at_seq > source.last_seq:
            raise InvalidArgument(
                f"at_seq must be between {source.history_start} and {source.last_seq} "
                f"for run {run_id!r}"
            )
        events = runs.history(run_id, upto=at_seq)
        created = self._creator().fork(source, events, utcnow())
        return RunHandle(self, created.run_id, created=True)

    def prune(
        self,
        older_than: timedelta | datetime | float,
        *,
        batch: int = 500,
        progress: Callable[[PruneResult], None] | None = None,
    ) -> PruneResult:
        """See :meth:`durable.App.prune`."""
        if isinstance(older_than, datetime):
            if older_than.utcoffset() is None:
                raise ValueError("a prune cutoff datetime must be aware (with a timezone)")
            cutoff = older_than
        else:
            age = seconds(older_than, "older_than")
            assert age is not None
            cutoff = utcnow() - timedelta(seconds=age)
        runs = self._store().runs
        total = PruneResult()
        while True:
            counts = runs.prune_batch(cutoff, batch)
            if counts.runs == 0:
                return total
            total = PruneResult(
                runs=total.runs + counts.runs,
                events=total.events + counts.events,
                signals=total.signals + counts.signals,
            )
            if progress is not None:
                progress(total)

    # -- results -----------------------------------------------------------------------------

    def status(self, run_id: str) -> str:
        """The run's current status."""
        return str(self._store().runs.status(run_id))

    def wait_result(self, run_id: str, timeout: float | None) -> Any:
        """Block until the run ends; its result, or the error its end stands for. A
        database restart or a short outage does not interrupt the wait: it reconnects
        and keeps waiting until ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        runs = self._store().runs
        waiter = self._result_waiter()
        event = waiter.register(run_id)
        outage = _Outage(run_id, deadline, timeout)
        try:
            status = outage.retry(lambda: runs.watch(run_id))  # after register: no end slips
            while status not in TERMINAL_STATUSES:
                wait = _SAFETY_POLL  # the notification usually comes first
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(
                            f"run {run_id!r} did not finish within {timeout:g}s "
                            f"(status {status}); is a worker running?"
                        )
                    wait = min(wait, left)
                event.wait(wait)
                event.clear()
                status = outage.retry(lambda: runs.status(run_id))
            row = outage.retry(lambda: runs.get_run(run_id))
        finally:
            waiter.unregister(run_id, event)
        return self._outcome(row)

    def _result_waiter(self) -> ResultWaiter:
        store = self._store()
        with self._lock:
            if self._waiter is None:
                self._waiter = ResultWaiter(lambda: store.listener(store.done_channel))
            return self._waiter

    def _outcome(self, row: RunRow) -> Any:
        end = row.end_data or {}
        if row.status == RunStatus.COMPLETED:
            return self._registry.decode_result(row.workflow, end.get("result"))
        if row.status == RunStatus.FAILED:
            raise RunFailed(row.run_id, end.get("error_type", "unknown"), end.get("message", ""))
        if row.status == RunStatus.CANCELLED:
            raise RunCancelled(row.run_id, end.get("reason"))
        raise RunTimedOut(row.run_id)

    # -- inspecting --------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunInfo:
        """See :meth:`durable.App.get_run`."""
        return self._info(self._store().runs.get_run(run_id))

    def history(self, run_id: str) -> list[Event]:
        """See :meth:`durable.App.history`."""
        return [
            Event(seq=e.seq, type=e.type, created_at=e.created_at, data=e.data)
            for e in self._store().runs.history(run_id)
        ]

    def list_runs(
        self,
        workflow: str | None = None,
        status: str | None = None,
        search: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> RunPage:
        """See :meth:`durable.App.list_runs`."""
        if limit < 0 or offset < 0:
            raise InvalidArgument("limit and offset must not be negative")
        if status is not None and status not in _STATUSES:
            raise InvalidArgument(
                f"unknown status {status!r}; the statuses are {', '.join(_STATUSES)}"
            )
        rows, total = self._store().runs.list_runs(
            workflow=workflow, status=status, search=search, limit=limit, offset=offset
        )
        return RunPage(runs=[self._info(r) for r in rows], total=total)

    def workers(self) -> list[WorkerInfo]:
        """See :meth:`durable.App.workers`."""
        return [
            WorkerInfo(
                worker_id=w.worker_id,
                host=w.host,
                pid=w.pid,
                started_at=w.started_at,
                last_seen=w.last_seen,
                concurrency=w.concurrency,
                workflows=w.workflows,
                queues=w.queues,
                runs_held=w.runs_held,
            )
            for w in self._store().runs.live_workers()
        ]

    def stats(self) -> dict[str, Any]:
        """See :meth:`durable.App.stats`."""
        by_status: dict[str, int] = {}
        by_workflow: dict[str, dict[str, int]] = {}
        total = 0
        for row in self._store().runs.stats():
            total += row.count
            status = str(row.status)
            by_status[status] = by_status.get(status, 0) + row.count
            by_workflow.setdefault(row.workflow, {})[status] = row.count
        return {"total": total, "by_status": by_status, "by_workflow": by_workflow}

    def _info(self, row: RunRow) -> RunInfo:
        start = row.start_data or {}
        end = row.end_data or {}
        args = None
        if "args" in start:
            try:
                args = list(self._registry.decode_args(row.workflow, start["args"]))
            except Exception:
                args = list(start["args"])
        result = None
        if row.status == RunStatus.COMPLETED:
            result = self._registry.decode_result(row.workflow, end.get("result"))
        return RunInfo(
            run_id=row.run_id,
            workflow=row.workflow,
            status=str(row.status),
            args=args,
            result=result,
            error=row.error,
            custom_status=self._codec.decode(row.custom_status),
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            parent_run_id=row.parent_run_id,
            source_run_id=row.source_run_id,
            idempotency_key=row.idempotency_key,
        )

    def resolve_run_id(self, run_id_or_prefix: str) -> str:
        """See :meth:`durable.App.resolve_run_id`."""
        from .._errors import AmbiguousRunId
        from ..store import RunNotFound

        runs = self._store().runs
        given = run_id_or_prefix

        def exists(run_id: str) -> bool:
            try:
                runs.status(run_id)
            except RunNotFound:
                return False
            return True

        def by_prefix(prefix: str) -> str | list[str]:
            """The one run ``prefix`` names, else the ids it matches (up to 1001)."""
            if len(prefix) < 4:  # as git: shorter prefixes are too easy to mistype
                return []
            found = runs.find_run_ids(prefix, limit=1001)
            if len(found) == 1:
                return found[0]
            # A run and its children (``<parent>:<pos>``): the prefix names the parent.
            if 1 < len(found) < 1001 and all(f.startswith(found[0] + ":") for f in found[1:]):
                return found[0]
            return found

        if exists(given):
            return given
        found = by_prefix(given)
        if isinstance(found, str):
            return found
        if not found and ":" in given:  # a root cut short, then the rest: a child's id
            head, _, tail = given.partition(":")
            root = by_prefix(head)
            if isinstance(root, list):
                roots = {f.partition(":")[0] for f in root}
                root = roots.pop() if len(roots) == 1 else ""
            if root and exists(f"{root}:{tail}"):
                return f"{root}:{tail}"
        if not found:
            raise RunNotFound(given)
        raise AmbiguousRunId(given, found[:5], more=len(found) > 5)
