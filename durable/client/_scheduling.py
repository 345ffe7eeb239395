"""Schedules between the App and the store: a declaration as the store's row, a due
schedule's decision (``_schedules.decide``) as runs to create, and the operations."""

from __future__ import annotations

import itertools
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

from .._clock import utcnow
from .._models import ScheduleInfo
from .._registry import Registry
from .._schedules import Schedule, decide
from ..store import FireDecision, NewRun, ScheduleRow, ScheduleStore, Unit
from ._create import RunCreator

__all__ = ["Scheduling", "schedule_of"]

NEXT_FIRE_TIMES = 5
MAX_BACKFILL = 10_000

Op = Generator[Unit[Any], Any, Any]


def schedule_of(row: ScheduleRow) -> Schedule:
    """A stored schedule as its declaration (to compute its ticks)."""
    return Schedule(
        name=row.name,
        workflow=row.workflow,
        cron=row.cron,
        every=row.every_seconds,
        timezone=row.timezone,
        args=tuple(row.args),
        overlap=row.overlap,
        catchup_window=row.catchup_seconds,
        queue=row.queue,
    )


class Scheduling:
    """The schedules of one App over its store's units of work."""

    def __init__(self, schedules: ScheduleStore, creator: RunCreator, registry: Registry) -> None:
        self._schedules = schedules
        self._creator = creator
        self._registry = registry

    # -- declarations ------------------------------------------------------------------

    def row_of(self, schedule: Schedule) -> ScheduleRow:
        """A declaration as the store's row (its arguments through the codec)."""
        return ScheduleRow(
            name=schedule.name,
            workflow=schedule.workflow,
            cron=schedule.cron,
            every_seconds=schedule.every,
            timezone=schedule.timezone,
            args=self._registry.codec.encode_args(schedule.args),
            overlap=schedule.overlap,
            catchup_seconds=schedule.catchup_window,
            queue=schedule.queue,
        )

    def put(self, schedule: Schedule) -> Unit[None]:
        """Write a declaration (the latest wins)."""
        return self._schedules.put(self.row_of(schedule), schedule.next_after)

    # -- firing ------------------------------------------------------------------------

    def decide(self, row: ScheduleRow, now: datetime, previous_active: bool) -> FireDecision:
        """What a due schedule does at the database's ``now``."""
        schedule = schedule_of(row)
        assert row.next_fire_at is not None
        d = decide(
            schedule,
            now=now,
            next_fire_at=row.next_fire_at,
            buffered=list(row.buffered),
            previous_active=previous_active,
        )
        runs = [self._run(row, tick, now) for tick in d.starts]
        return FireDecision(runs, d.cancel_previous, d.buffered, d.next_fire_at, d.due_at)

    def next_due_in(self) -> Unit[float | None]:
        """Seconds until the earliest due schedule (None: no schedule)."""
        return self._schedules.next_due_in()

    def fire_due(self) -> Unit[tuple[list[str], list[tuple[str, str]]]]:
        """Fire the due schedules (a worker's scheduler calls it)."""
        return self._schedules.fire_due(self.decide)

    def _run(self, row: ScheduleRow, tick: datetime, now: datetime) -> NewRun:
        return self._creator.scheduled(row.name, row.workflow, row.args, tick, now, row.queue)

    # -- operations --------------------------------------------------------------------

    def trigger(self, name: str) -> Unit[str]:
        """A run now, its tick the current second, whatever the overlap policy says."""

        def make(row: ScheduleRow, now: datetime) -> NewRun:
            return self._run(row, now.replace(microsecond=0), now)

        return self._schedules.start_now(name, make)

    def backfill(self, name: str, start: datetime, end: datetime) -> Unit[list[str]]:
        """One run per tick in ``[start, end)`` that has none yet."""
        if start.utcoffset() is None or end.utcoffset() is None:
            raise ValueError("backfill needs aware datetimes (with a time zone)")
        if end <= start:
            raise ValueError(f"backfill needs start < end, not {start} .. {end}")

        def make(row: ScheduleRow) -> list[NewRun]:
            schedule = schedule_of(row)
            now = utcnow()
            ticks: list[datetime] = []
            for tick in schedule.ticks_after(start - timedelta(microseconds=1)):
                if tick >= end:
                    break
                if len(ticks) == MAX_BACKFILL:
                    raise ValueError(
                        f"backfill of schedule {name!r} would start more than "
                        f"{MAX_BACKFILL:,} runs; backfill a shorter range at a time"
                    )
                ticks.append(tick)
            return [self._run(row, tick, now) for tick in ticks]

        return self._schedules.backfill(name, make)

    def set_paused(self, name: str, paused: bool) -> Unit[None]:
        """Pause or resume a schedule."""

        def first_tick(row: ScheduleRow, now: datetime) -> datetime:
            return schedule_of(row).next_after(now)

        return self._schedules.set_paused(name, paused, first_tick)

    def info(self, row: ScheduleRow, now: datetime) -> ScheduleInfo:
        """A stored schedule as the public :class:`ScheduleInfo`."""
        schedule = schedule_of(row)
        upcoming: list[datetime] = []
        if not row.paused:
            if row.next_fire_at is not None and row.next_fire_at <= now:
                upcoming.append(row.next_fire_at)  # due: fires at the next look
            ticks = schedule.ticks_after(now)
            upcoming += itertools.islice(ticks, NEXT_FIRE_TIMES - len(upcoming))
        return ScheduleInfo(
            name=row.name,
            workflow=row.workflow,
            cron=row.cron,
            every=row.every_seconds,
            timezone=row.timezone,
            paused=row.paused,
            overlap=row.overlap,
            catchup_window=row.catchup_seconds,
            queue=row.queue,
            next_fire_times=upcoming,
            last_run_id=row.last_run_id,
            buffered=len(row.buffered),
        )
