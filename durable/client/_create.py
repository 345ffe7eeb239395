"""The one place that creates runs: ``start``, ``rerun``, ``fork`` and children.

Each builds the run's first events and its timing (when it may start, its deadline from
the workflow timeout) the same way, as a unit of work that creates it in one statement
(run by the sync or the async client, or by a worker for a child). The
timeout travels with the run: a rerun or a fork copies the source run's, so it holds
whichever process creates them, with or without the workflow registered.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from .. import telemetry
from .._clock import new_run_id, new_seed
from .._registry import Registry, WorkflowDef
from .._schedules import run_id_for
from ..replay.vocabulary import EventType
from ..store import Created, NewEvent, NewRun, RunRow, RunStore, StoredEvent, Unit

__all__ = ["RunCreator", "child_run_id", "fork_events"]


class RunCreator:
    """Creates runs through the store (see the module doc)."""

    def __init__(self, runs: RunStore, registry: Registry) -> None:
        self._runs = runs
        self._registry = registry

    def start(
        self,
        wf: WorkflowDef,
        encoded_args: list[Any],
        *,
        run_id: str | None,
        idempotency_key: str | None,
        begin: datetime,
        now: datetime,
        queue: str | None = None,
        priority: int = 0,
        concurrency_key: str | None = None,
        dedup_key: str | None = None,
    ) -> Unit[Created]:
        """A new run of a registered workflow, startable from ``begin``, in ``queue``
        (default: the workflow's)."""
        return self._create(
            run_id or new_run_id(),
            wf.name,
            [_started(wf.name, encoded_args, now)],
            now=now,
            begin=begin,
            timeout=wf.timeout,
            idempotency_key=idempotency_key,
            queue=queue if queue is not None else wf.queue,
            priority=priority,
            concurrency_key=concurrency_key,
            dedup_key=dedup_key,
        )

    def rerun(self, source: RunRow, now: datetime) -> Unit[Created]:
        """A new run of ``source``'s workflow and arguments, its timeout and queue
        options included (not its dedup key: the source may still hold it)."""
        args = (source.start_data or {}).get("args", [])
        return self._create(
            new_run_id(),
            source.workflow,
            [_started(source.workflow, args, now)],
            now=now,
            begin=now,
            timeout=source.timeout_seconds,
            timeout_unknown=source.timeout_unknown,
            source_run_id=source.run_id,
            queue=source.queue,
            priority=source.priority,
            concurrency_key=source.concurrency_key,
        )

    def fork(self, source: RunRow, events: Sequence[StoredEvent], now: datetime) -> Unit[Created]:
        """A new run whose log starts as a copy of ``events`` (renumbered from 1)."""
        copied = fork_events(events)
        renumbered = [
            NewEvent(i, e.type, e.data, e.created_at) for i, e in enumerate(copied, start=1)
        ]
        return self._create(
            new_run_id(),
            source.workflow,
            renumbered,
            now=now,
            begin=now,
            timeout=source.timeout_seconds,
            timeout_unknown=source.timeout_unknown,
            source_run_id=source.run_id,
            queue=source.queue,
            priority=source.priority,
            concurrency_key=source.concurrency_key,
        )

    def child(
        self,
        parent_run_id: str,
        history_start: int,
        pos: int,
        workflow: str,
        encoded_args: list[Any],
        now: datetime,
    ) -> Unit[Created]:
        """The child at position ``pos`` of a parent's current history; its id is
        deterministic, so creating it again (after a crash) finds the same run."""
        wf = self._registry.workflows.get(workflow)
        return self._create(
            child_run_id(parent_run_id, history_start, pos),
            workflow,
            [_started(workflow, encoded_args, now)],
            now=now,
            begin=now,
            timeout=wf.timeout if wf is not None else None,
            timeout_unknown=wf is None,
            parent_run_id=parent_run_id,
            parent_pos=pos,
            queue=wf.queue if wf is not None else None,
        )

    def scheduled(
        self,
        schedule: str,
        workflow: str,
        encoded_args: list[Any],
        tick: datetime,
        now: datetime,
        queue: str | None,
    ) -> NewRun:
        """The run of a schedule's tick (``schedule@tick``): ``ctx.scheduled_at`` is the
        tick; its id makes it once however many workers fire the schedule."""
        wf = self._registry.workflows.get(workflow)
        started = _started(workflow, encoded_args, now)
        data = {**started.data, "scheduled_at": tick.isoformat()}
        return self._new_run(
            run_id_for(schedule, tick),
            workflow,
            [NewEvent(1, started.type, data, now)],
            now=now,
            begin=now,
            timeout=wf.timeout if wf is not None else None,
            timeout_unknown=wf is None,
            queue=queue if queue is not None else (wf.queue if wf is not None else None),
        )

    def start_many(
        self,
        wf: WorkflowDef,
        encoded: list[list[Any]],
        *,
        run_ids: Sequence[str | None],
        idempotency_keys: Sequence[str | None],
        dedup_keys: Sequence[str | None],
        begin: datetime,
        now: datetime,
        queue: str | None = None,
        priority: int = 0,
        concurrency_key: str | None = None,
    ) -> Unit[list[Created]]:
        """Many runs of one workflow in one statement (see :meth:`start`)."""
        runs = [
            self._new_run(
                run_ids[i] or new_run_id(),
                wf.name,
                [_started(wf.name, args, now)],
                now=now,
                begin=begin,
                timeout=wf.timeout,
                idempotency_key=idempotency_keys[i],
                queue=queue if queue is not None else wf.queue,
                priority=priority,
                concurrency_key=concurrency_key,
                dedup_key=dedup_keys[i],
            )
            for i, args in enumerate(encoded)
        ]
        return self._runs.create_runs(runs)

    def _create(
        self, run_id: str, workflow: str, events: list[NewEvent], **options: Any
    ) -> Unit[Created]:
        return self._runs.create_run(self._new_run(run_id, workflow, events, **options))

    def _new_run(
        self,
        run_id: str,
        workflow: str,
        events: list[NewEvent],
        *,
        now: datetime,
        begin: datetime,
        timeout: float | None,
        timeout_unknown: bool = False,
        idempotency_key: str | None = None,
        parent_run_id: str | None = None,
        parent_pos: int | None = None,
        source_run_id: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        concurrency_key: str | None = None,
        dedup_key: str | None = None,
    ) -> NewRun:
        deadline = begin + timedelta(seconds=timeout) if timeout else None
        return NewRun(
            run_id=run_id,
            workflow=workflow,
            events=events,
            now=now,
            wake_at=begin,
            idempotency_key=idempotency_key,
            timeout_seconds=timeout,
            deadline=deadline,
            timeout_unknown=timeout_unknown,
            parent_run_id=parent_run_id,
            parent_pos=parent_pos,
            source_run_id=source_run_id,
            notify=begin <= now,
            queue=queue,
            priority=priority,
            concurrency_key=concurrency_key,
            dedup_key=dedup_key,
        )


def child_run_id(parent_run_id: str, history_start: int, pos: int) -> str:
    """The deterministic id of the child at ``pos`` of a parent's current history."""
    if history_start == 1:
        return f"{parent_run_id}:{pos}"
    return f"{parent_run_id}:{history_start}:{pos}"


def _started(workflow: str, encoded_args: list[Any], now: datetime) -> NewEvent:
    data: dict[str, Any] = {"workflow": workflow, "args": encoded_args, "seed": new_seed()}
    trace = telemetry.carrier()  # the starter's span (or the parent run's, for a child)
    if trace is not None:
        data["trace"] = trace
    return NewEvent(1, EventType.RUN_STARTED, data, now)


_FORK_DROPS = frozenset(
    {
        EventType.RUN_RETRIED,
        EventType.RUN_BLOCKED,
        EventType.RUN_COMPLETED,
        EventType.RUN_FAILED,
        EventType.RUN_CANCELLED,
        EventType.RUN_TIMED_OUT,
        EventType.RUN_PAUSED,
        EventType.RUN_RESUMED,
        EventType.CANCEL_REQUESTED,
    }
)


def fork_events(events: Sequence[StoredEvent]) -> list[StoredEvent]:
    """The events a fork copies: voids applied, operational and terminal events dropped,
    children that never reported back forgotten (the fork starts its own)."""
    voided: set[int] = set()
    for e in events:
        if e.type == EventType.RUN_RETRIED:
            voided.update(int(s) for s in e.data.get("voids", []))
    kept = [e for e in events if e.seq not in voided and e.type not in _FORK_DROPS]
    finished_children = {
        e.data.get("pos")
        for e in kept
        if e.type in (EventType.CHILD_COMPLETED, EventType.CHILD_FAILED)
    }
    return [
        e
        for e in kept
        if not (e.type == EventType.CHILD_STARTED and e.data.get("pos") not in finished_children)
    ]
