"""Every client operation written once, for the sync and the async client.

An operation is a generator that checks its arguments, yields the store's units of work
(each one transaction, see ``durable.store.Unit``) and gets each one's result back (or
its error, thrown in at the ``yield``), and returns what the caller gets. It does no I/O:
:class:`~durable.client.Client` runs the units on the sync pool, ``AsyncClient`` on the
async pool, and either of them on a caller's connection for ``conn=``. So the two clients
cannot drift apart: the checks, the messages and the meaning of every result live here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from .._clock import utcnow
from .._errors import AmbiguousRunId, InvalidArgument, RunCancelled, RunTimedOut
from .._models import (
    Bucket,
    Event,
    PruneResult,
    Queue,
    QueueInfo,
    Rate,
    RunInfo,
    RunPage,
    WorkerInfo,
    seconds,
)
from .._registry import Registry
from ..replay.errors import RunFailed
from ..replay.vocabulary import RunStatus
from ..store import (
    Created,
    DatabaseUnavailable,
    PendingFacts,
    QueueSpec,
    RunNotFound,
    RunRow,
    RunStateError,
    RunStore,
    Unit,
)
from ._create import RunCreator

__all__ = ["Op", "Ops", "Pause"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Pause:
    """What an operation yields to wait ``seconds`` between two units (the executor
    sleeps, holding no connection), as ``prune`` does between batches."""

    seconds: float


Op = Generator[Unit[Any] | Pause, Any, T]

_STATUSES = tuple(str(s) for s in RunStatus)


class Ops:
    """The client's operations over one store's units of work (see the module doc)."""

    def __init__(self, runs: RunStore, registry: Registry) -> None:
        self.runs = runs
        self._registry = registry
        self._creator = RunCreator(runs, registry)

    @property
    def _codec(self) -> Any:
        return self._registry.codec

    # -- starting runs -----------------------------------------------------------------------

    def start(
        self,
        workflow: Any,
        args: tuple[Any, ...],
        *,
        run_id: str | None,
        idempotency_key: str | None,
        start_at: datetime | None,
        delay: float | timedelta | None,
        queue: str | None = None,
        priority: int = 0,
        concurrency_key: str | None = None,
        dedup_key: str | None = None,
    ) -> Op[Created]:
        """See :meth:`durable.App.start`."""
        wf = self._registry.workflow_def(workflow)
        wf.check_args(args)
        _check_queue_options(queue, priority, concurrency_key, dedup_key)
        begin_of = _begin(start_at, delay)
        encoded = self._codec.encode_args(args)
        now = utcnow()
        begin = begin_of(now)
        created: Created = yield self._creator.start(
            wf,
            encoded,
            run_id=run_id,
            idempotency_key=idempotency_key,
            begin=begin,
            now=now,
            queue=queue,
            priority=priority,
            concurrency_key=concurrency_key,
            dedup_key=dedup_key,
        )
        if not created.created and created.run_id == run_id and created.workflow != wf.name:
            raise RunStateError(
                f"run {created.run_id!r} exists and is a run of workflow {created.workflow!r}, "
                f"not {wf.name!r}; choose another run_id",
                run_id=created.run_id,
            )
        return created

    def start_many(
        self,
        workflow: Any,
        args_list: Sequence[Sequence[Any]],
        *,
        run_ids: Sequence[str | None] | None,
        idempotency_keys: Sequence[str | None] | None,
        start_at: datetime | None,
        delay: float | timedelta | None,
        queue: str | None,
        priority: int,
        concurrency_key: str | None,
        dedup_keys: Sequence[str | None] | None,
    ) -> Op[list[Created]]:
        """See :meth:`durable.App.start_many`."""
        wf = self._registry.workflow_def(workflow)
        if isinstance(args_list, str | bytes) or not isinstance(args_list, Sequence):
            raise TypeError(
                "start_many takes a list of argument tuples, one per run, e.g. [(1,), (2,)]"
            )
        count = len(args_list)
        lists: dict[str, Sequence[str | None]] = {}
        for name, given in (
            ("run_ids", run_ids),
            ("idempotency_keys", idempotency_keys),
            ("dedup_keys", dedup_keys),
        ):
            if given is None:
                lists[name] = [None] * count
                continue
            if isinstance(given, str) or len(given) != count:
                raise ValueError(
                    f"{name} must be a list with one entry per run ({count}), not {given!r}"
                )
            lists[name] = list(given)
        encoded = []
        for i, args in enumerate(args_list):
            if isinstance(args, str | bytes) or not isinstance(args, Sequence):
                raise TypeError(
                    f"start_many: the arguments of run {i} must be a tuple or list, not "
                    f"{args!r}; a run with one argument is ({args!r},)"
                )
            wf.check_args(tuple(args))
            _check_queue_options(queue, priority, concurrency_key, lists["dedup_keys"][i])
            encoded.append(self._codec.encode_args(tuple(args)))  # all checked before any write
        begin_of = _begin(start_at, delay)
        now = utcnow()
        begin = begin_of(now)
        if not encoded:
            return []
        created: list[Created] = yield self._creator.start_many(
            wf,
            encoded,
            run_ids=lists["run_ids"],
            idempotency_keys=lists["idempotency_keys"],
            dedup_keys=lists["dedup_keys"],
            begin=begin,
            now=now,
            queue=queue,
            priority=priority,
            concurrency_key=concurrency_key,
        )
        return created

    # -- talking to runs ---------------------------------------------------------------------

    def signal(
        self, run_id: str, name: str, payload: Any, *, idempotency_key: str | None
    ) -> Op[None]:
        """See :meth:`durable.App.signal`."""
        encoded = self._codec.encode(payload)
        try:
            yield self.runs.signal(run_id, name, encoded, idempotency_key=idempotency_key)
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

    def emit_event(self, key: str, payload: Any) -> Op[bool]:
        """See :meth:`durable.App.emit_event`."""
        emitted: bool = yield self.runs.emit_event(key, self._codec.encode(payload))
        return emitted

    def control(self, run_id: str, kind: str, reason: str | None = None) -> Op[None]:
        """Pause, resume or cancel (see :meth:`durable.App.pause`)."""
        yield self.runs.control(run_id, kind, reason, utcnow())

    # -- operating ---------------------------------------------------------------------------

    def retry(self, run_id: str) -> Op[str]:
        """See :meth:`durable.App.retry`."""
        yield self.runs.retry(run_id, utcnow())
        return run_id

    def rerun(self, run_id: str) -> Op[str]:
        """See :meth:`durable.App.rerun`; the new run's id."""
        source: RunRow = yield self.runs.get_run(run_id)
        created: Created = yield self._creator.rerun(source, utcnow())
        return created.run_id

    def fork(self, run_id: str, at_seq: int) -> Op[str]:
        """See :meth:`durable.App.fork`; the new run's id."""
        source: RunRow = yield self.runs.get_run(run_id)
        if at_seq < source.history_start or at_seq > source.last_seq:
            raise InvalidArgument(
                f"at_seq must be between {source.history_start} and {source.last_seq} "
                f"for run {run_id!r}"
            )
        events = yield self.runs.history(run_id, upto=at_seq)
        created: Created = yield self._creator.fork(source, events, utcnow())
        return created.run_id

    def prune(
        self,
        older_than: timedelta | datetime | float,
        *,
        batch: int,
        progress: Callable[[PruneResult], None] | None,
        pause: float | timedelta | None = None,
    ) -> Op[PruneResult]:
        """See :meth:`durable.App.prune`."""
        rest = None if pause is None else seconds(pause, "pause")
        if isinstance(older_than, datetime):
            if older_than.utcoffset() is None:
                raise ValueError("a prune cutoff datetime must be aware (with a timezone)")
            cutoff = older_than
        else:
            age = seconds(older_than, "older_than")
            assert age is not None
            cutoff = utcnow() - timedelta(seconds=age)
        total = PruneResult()
        while True:
            began = time.monotonic()
            counts = yield self.runs.prune_batch(cutoff, batch)
            if counts.runs == 0:
                return total
            total = PruneResult(
                runs=total.runs + counts.runs,
                events=total.events + counts.events,
                signals=total.signals + counts.signals,
            )
            if progress is not None:
                progress(total)
            # by default as long as the batch took: the prune takes at most about half of
            # one database core, and the workers the rest (benchmarks/bench_scale.py)
            yield Pause(time.monotonic() - began if rest is None else rest)

    # -- reading -----------------------------------------------------------------------------

    def status(self, run_id: str) -> Op[str]:
        """The run's current status."""
        status = yield self.runs.status(run_id)
        return str(status)

    def get_run(self, run_id: str) -> Op[RunInfo]:
        """See :meth:`durable.App.get_run`; a pending run's ``pending_reason`` included."""
        row: RunRow = yield self.runs.get_run(run_id)
        reason = None
        waits_for_slot = (
            row.status == RunStatus.WAITING and row.queue is not None and row.admitted_at is None
        )  # a retried run of a queue
        if row.status == RunStatus.PENDING or waits_for_slot:
            facts = yield self.runs.pending_facts(run_id)
            if facts is not None:
                reason = pending_reason(row, facts)
        return self.info(row, pending_reason=reason)

    def history(self, run_id: str) -> Op[list[Event]]:
        """See :meth:`durable.App.history`."""
        events = yield self.runs.history(run_id)
        return [Event(seq=e.seq, type=e.type, created_at=e.created_at, data=e.data) for e in events]

    def list_runs(
        self,
        workflow: str | None,
        status: str | None,
        search: str | None,
        limit: int,
        offset: int,
    ) -> Op[RunPage]:
        """See :meth:`durable.App.list_runs`."""
        if limit < 0 or offset < 0:
            raise InvalidArgument("limit and offset must not be negative")
        if status is not None and status not in _STATUSES:
            raise InvalidArgument(
                f"unknown status {status!r}; the statuses are {', '.join(_STATUSES)}"
            )
        rows, total = yield self.runs.list_runs(
            workflow=workflow, status=status, search=search, limit=limit, offset=offset
        )
        return RunPage(runs=[self.info(r) for r in rows], total=total)

    def workers(self) -> Op[list[WorkerInfo]]:
        """See :meth:`durable.App.workers`."""
        rows = yield self.runs.live_workers()
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
            for w in rows
        ]

    def stats(self) -> Op[dict[str, Any]]:
        """See :meth:`durable.App.stats`."""
        by_status: dict[str, int] = {}
        by_workflow: dict[str, dict[str, int]] = {}
        total = 0
        for row in (yield self.runs.stats()):
            total += row.count
            status = str(row.status)
            by_status[status] = by_status.get(status, 0) + row.count
            by_workflow.setdefault(row.workflow, {})[status] = row.count
        return {"total": total, "by_status": by_status, "by_workflow": by_workflow}

    def timeseries(
        self,
        granularity: str,
        since: datetime | None,
        until: datetime | None,
        workflow: str | None,
    ) -> Op[list[Bucket]]:
        """See :meth:`durable.App.timeseries`."""
        if granularity not in ("hour", "day"):
            raise InvalidArgument(f'granularity must be "hour" or "day", not {granularity!r}')
        step = timedelta(hours=1) if granularity == "hour" else timedelta(days=1)
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.utcoffset() is None:
                raise InvalidArgument(f"timeseries needs an aware datetime for {name}")
        end = _bucket_of(until if until is not None else utcnow() + step, granularity)
        if until is not None and end < until:
            end += step  # a partial last bucket is included
        start = _bucket_of(since, granularity) if since is not None else end - 24 * step
        if start >= end:
            raise InvalidArgument(f"timeseries needs since < until, not {since} .. {until}")
        if (end - start) / step > MAX_BUCKETS:
            raise InvalidArgument(
                f"timeseries covers at most {MAX_BUCKETS} buckets; narrow since/until "
                "or use a coarser granularity"
            )
        rows = yield self.runs.timeseries(granularity, start, end, workflow)
        return [Bucket.model_validate(r, from_attributes=True) for r in rows]

    def resolve_run_id(self, given: str) -> Op[str]:
        """See :meth:`durable.App.resolve_run_id`."""

        def exists(run_id: str) -> Op[bool]:
            try:
                yield self.runs.status(run_id)
            except RunNotFound:
                return False
            return True

        def by_prefix(prefix: str) -> Op[str | list[str]]:
            """The one run ``prefix`` names, else the ids it matches (up to 1001)."""
            if len(prefix) < 4:  # as git: shorter prefixes are too easy to mistype
                return []
            found: list[str] = yield self.runs.find_run_ids(prefix, limit=1001)
            if len(found) == 1:
                return found[0]
            # A run and its children (``<parent>:<pos>``): the prefix names the parent.
            if 1 < len(found) < 1001 and all(f.startswith(found[0] + ":") for f in found[1:]):
                return found[0]
            return found

        if (yield from exists(given)):
            return given
        found = yield from by_prefix(given)
        if isinstance(found, str):
            return found
        if not found and ":" in given:  # a root cut short, then the rest: a child's id
            head, _, tail = given.partition(":")
            root = yield from by_prefix(head)
            if isinstance(root, list):
                roots = {f.partition(":")[0] for f in root}
                root = roots.pop() if len(roots) == 1 else ""
            if root and (yield from exists(f"{root}:{tail}")):
                return f"{root}:{tail}"
        if not found:
            raise RunNotFound(given)
        raise AmbiguousRunId(given, found[:5], more=len(found) > 5)

    # -- what rows mean ----------------------------------------------------------------------

    def outcome(self, row: RunRow) -> Any:
        """The result of an ended run, or the error its end stands for."""
        end = row.end_data or {}
        if row.status == RunStatus.COMPLETED:
            return self._registry.decode_result(row.workflow, end.get("result"))
        if row.status == RunStatus.FAILED:
            raise RunFailed(row.run_id, end.get("error_type", "unknown"), end.get("message", ""))
        if row.status == RunStatus.CANCELLED:
            raise RunCancelled(row.run_id, end.get("reason"))
        raise RunTimedOut(row.run_id)

    def queues(self) -> Op[list[QueueInfo]]:
        """See :meth:`durable.App.queues`."""
        rows = yield self.runs.queues()
        out = []
        for q in rows:
            keys = {}
            if q.spec.key_concurrency is not None:
                counts = yield self.runs.busiest_keys(q.spec.name)
                keys = {k.key: {"running": k.running, "pending": k.pending} for k in counts}
            out.append(
                QueueInfo(
                    name=q.spec.name,
                    concurrency=q.spec.concurrency,
                    worker_concurrency=q.spec.worker_concurrency,
                    key_concurrency=q.spec.key_concurrency,
                    rate_limit=_rate(q.spec),
                    pending=q.pending,
                    running=q.running,
                    busiest_keys=keys,
                )
            )
        return out

    def set_queue(self, queue: Queue) -> Op[Queue]:
        """Write a queue's declaration (the latest wins)."""
        yield self.runs.put_queue(queue_spec(queue))
        return queue

    def update_queue(self, name: str, changes: dict[str, Any]) -> Op[Queue]:
        """Change some limits of a stored queue, keeping the others (the CLI's ``queues
        set``); ``changes`` maps a limit's name to its new value (None: no limit)."""
        spec = yield self.runs.get_queue(name)
        if spec is None:
            raise InvalidArgument(
                f"no queue named {name!r}; declare it with app.queue({name!r}, ...) "
                "or start a run into it first"
            )
        current = {
            "concurrency": spec.concurrency,
            "worker_concurrency": spec.worker_concurrency,
            "key_concurrency": spec.key_concurrency,
            "rate_limit": _rate(spec),
        }
        unknown = set(changes) - set(current)
        if unknown:
            raise InvalidArgument(f"unknown queue limits: {', '.join(sorted(unknown))}")
        current.update(changes)
        queue = Queue(name, **current)
        yield self.runs.put_queue(queue_spec(queue))
        return queue

    def info(self, row: RunRow, *, pending_reason: str | None = None) -> RunInfo:
        """A run's row as the public :class:`RunInfo`."""
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
            queue=row.queue,
            priority=row.priority,
            concurrency_key=row.concurrency_key,
            pending_reason=pending_reason,
        )


def queue_spec(queue: Queue) -> QueueSpec:
    """A declaration as the store's row."""
    rate = queue.rate_limit
    return QueueSpec(
        name=queue.name,
        concurrency=queue.concurrency,
        worker_concurrency=queue.worker_concurrency,
        key_concurrency=queue.key_concurrency,
        rate_limit=rate.limit if rate is not None else None,
        rate_per=rate.per if rate is not None else None,
    )


def _rate(spec: QueueSpec) -> Rate | None:
    if spec.rate_limit is None or spec.rate_per is None:
        return None
    return Rate(spec.rate_limit, per=spec.rate_per)


def pending_reason(row: RunRow, facts: PendingFacts) -> str:
    """One line saying why a pending run has not started."""
    if facts.deferred and facts.wake_at is not None:
        return f"deferred until {facts.wake_at.isoformat(timespec='seconds')}"
    if not facts.served:
        return f"no live worker registers workflow {row.workflow!r}"
    queue = row.queue
    if queue is None:
        return "waiting for a worker to claim it"
    if facts.concurrency is not None and facts.held >= facts.concurrency:
        return f"queue {queue!r}: {facts.held} of {facts.concurrency} slots taken"
    key = row.concurrency_key
    if (
        key is not None
        and facts.key_concurrency is not None
        and facts.key_held >= facts.key_concurrency
    ):
        return (
            f"key {key!r} of queue {queue!r}: {facts.key_held} of "
            f"{facts.key_concurrency} slots taken"
        )
    if facts.rate_limit is not None and facts.recent >= facts.rate_limit:
        wait = max(facts.next_start_in or 0.0, 0.0)
        return (
            f"rate limit of queue {queue!r} ({facts.rate_limit} per {facts.rate_per:g}s): "
            f"next start in {math.ceil(wait)}s"
        )
    if facts.ahead:
        return f"queue {queue!r}: {facts.ahead} run(s) ahead of it"
    return f"queue {queue!r}: next to start, waiting for a worker to claim it"


def _check_queue_options(
    queue: str | None, priority: int, concurrency_key: str | None, dedup_key: str | None
) -> None:
    if queue is not None and (not isinstance(queue, str) or not queue.strip()):
        raise InvalidArgument(f"queue must be a queue's name (a non-empty str), not {queue!r}")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidArgument(f"priority must be an int (lower starts first), not {priority!r}")
    if not -(2**31) <= priority < 2**31:
        raise InvalidArgument(f"priority must fit in 32 bits, not {priority}")
    for what, value in (("concurrency_key", concurrency_key), ("dedup_key", dedup_key)):
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(f"{what} must be a str or None, not {value!r}")


def timeout_message(run_id: str, timeout: float | None, status: str) -> str:
    """What ``result(timeout=...)`` says when the time is up."""
    return (
        f"run {run_id!r} did not finish within {timeout:g}s (status {status}); is a worker running?"
    )


#: the most buckets one timeseries call returns (about 14 months of hours)
MAX_BUCKETS = 10_000


def _bucket_of(when: datetime, granularity: str) -> datetime:
    """The start of the UTC hour or day that holds ``when``."""
    when = when.astimezone(UTC)
    if granularity == "hour":
        return when.replace(minute=0, second=0, microsecond=0)
    return when.replace(hour=0, minute=0, second=0, microsecond=0)


def _begin(
    start_at: datetime | None, delay: float | timedelta | None
) -> Callable[[datetime], datetime]:
    """When a run may start, given ``now``: ``start_at``, ``now + delay``, or now. The
    options are checked here, before anything else happens."""
    if start_at is not None and delay is not None:
        raise ValueError("pass start_at or delay, not both")
    if start_at is not None and (
        not isinstance(start_at, datetime) or start_at.utcoffset() is None
    ):
        raise ValueError("start_at must be an aware datetime (with a timezone)")
    delay_s = seconds(delay, "delay")

    def begin(now: datetime) -> datetime:
        if delay_s:
            return now + timedelta(seconds=delay_s)
        return start_at.astimezone(UTC) if start_at is not None else now

    return begin
