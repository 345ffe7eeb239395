"""The units of work of schedules: declarations, firing the due ones, operations.

The rules (ticks, time zones, catch-up, overlap) are not the store's: the caller hands
them in as functions (``first_tick``, ``decide``), called inside the transaction with the
database's ``now()``, so firing a tick and moving ``next_fire_at`` commit together.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..replay.vocabulary import TERMINAL_STATUSES, RunStatus
from ._db import Database
from ._family import Family
from ._plan import Plan, Query, Unit
from ._records import NewRun, jsonb_text
from ._runs import Created, RunStore

__all__ = ["SCHEDULES_CHANGED", "FireDecision", "ScheduleRow", "ScheduleStore"]

#: payload of the work-channel notification that a schedule changed: workers' schedulers
#: look again at once
SCHEDULES_CHANGED = "*schedules*"


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A schedule as stored: its declaration (``args`` as the codec's JSON) and state."""

    name: str
    workflow: str
    cron: str | None
    every_seconds: float | None
    timezone: str
    args: list[Any]
    overlap: str
    catchup_seconds: float
    queue: str | None
    paused: bool = False
    next_fire_at: datetime | None = None
    due_at: datetime | None = None
    buffered: tuple[datetime, ...] = ()
    last_run_id: str | None = None
    last_fired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FireDecision:
    """What to do with a due schedule (see ``durable._schedules.decide``): runs to
    create (in order), whether to cancel the previous run first, and the new state."""

    runs: Sequence[NewRun]
    cancel_previous: bool
    buffered: Sequence[datetime]
    next_fire_at: datetime
    due_at: datetime


Decide = Callable[[ScheduleRow, datetime, bool], FireDecision]


class ScheduleStore:
    """Schedules in the database (see the module doc); no method does I/O."""

    def __init__(self, db: Database, family: Family, runs: RunStore) -> None:
        self._db = db
        self._q = db.q
        self._family = family
        self._runs = runs

    def put(self, row: ScheduleRow, first_tick: Callable[[datetime], datetime]) -> Unit[None]:
        """Write a declaration (the latest wins); ``first_tick(now)`` is its next tick for a
        new schedule or one whose timing changed."""
        return Unit(functools.partial(self._put, row, first_tick), tx=True)

    def _put(self, row: ScheduleRow, first_tick: Callable[[datetime], datetime]) -> Plan[None]:
        now = (yield Query(self._q["db_now"]))[0]
        yield Query(
            self._q["schedule_put"],
            {
                "name": row.name,
                "workflow": row.workflow,
                "cron": row.cron,
                "every": row.every_seconds,
                "timezone": row.timezone,
                "args": jsonb_text(list(row.args)),
                "overlap": row.overlap,
                "catchup": row.catchup_seconds,
                "queue": row.queue,
                "next_fire_at": first_tick(now),
            },
            "none",
        )
        yield from self._family.notify(self._db.work_channel, SCHEDULES_CHANGED)

    def fire_due(
        self, decide: Decide, limit: int = 50
    ) -> Unit[tuple[list[str], list[tuple[str, str]]]]:
        """Fire up to ``limit`` due schedules (each locked, ``SKIP LOCKED``: one worker
        fires a schedule at a time); returns the ids of the runs created, and the
        schedules ``decide`` refused (name, why: a time zone or cron expression this
        process cannot read), which are looked at again in a minute."""
        return Unit(functools.partial(self._fire_due, decide, limit), tx=True)

    def _fire_due(
        self, decide: Decide, limit: int
    ) -> Plan[tuple[list[str], list[tuple[str, str]]]]:
        now = (yield Query(self._q["db_now"]))[0]
        rows = yield Query(self._q["schedules_due"], {"limit": limit}, "all")
        created: list[str] = []
        refused: list[tuple[str, str]] = []
        for r in rows:
            row = _row(r)
            active = yield from self._active(row)
            try:
                decision = decide(row, now, active)
            except Exception as exc:  # one bad row must not stop the others
                refused.append((row.name, f"{type(exc).__name__}: {exc}"))
                yield Query(self._q["schedule_defer"], {"name": row.name}, "none")
                continue
            created.extend((yield from self._apply(row, decision)))
        return created, refused

    def _active(self, row: ScheduleRow) -> Plan[bool]:
        if row.last_run_id is None:
            return False
        status = yield Query(self._q["run_status"], {"run_id": row.last_run_id})
        return status is not None and RunStatus(status[0]) not in TERMINAL_STATUSES

    def _apply(self, row: ScheduleRow, decision: FireDecision) -> Plan[list[str]]:
        if decision.cancel_previous and row.last_run_id is not None:
            now = (yield Query(self._q["db_now"]))[0]
            yield from self._family.control(
                row.last_run_id,
                "cancel",
                f"schedule {row.name!r}: a new tick came (overlap cancel_other)",
                now,
                raise_inactive=False,
            )
        created: list[str] = []
        last = None
        for run in decision.runs:
            made: Created = yield from self._runs.create_plan(run)
            if made.created:
                created.append(made.run_id)
            last = made.run_id
        yield Query(
            self._q["schedule_fired"],
            {
                "name": row.name,
                "next_fire_at": decision.next_fire_at,
                "due_at": decision.due_at,
                "buffered": list(decision.buffered),
                "last_run_id": last,
            },
            "none",
        )
        return created

    def start_now(self, name: str, make: Callable[[ScheduleRow, datetime], NewRun]) -> Unit[str]:
        """Start a run of the schedule now (its tick: ``make(row, now)``) whatever its
        overlap says; it becomes the schedule's last run. Returns its run id."""
        return Unit(functools.partial(self._start_now, name, make), tx=True)

    def _start_now(self, name: str, make: Callable[[ScheduleRow, datetime], NewRun]) -> Plan[str]:
        row = yield from self._lock(name)
        now = (yield Query(self._q["db_now"]))[0]
        made: Created = yield from self._runs.create_plan(make(row, now))
        yield Query(
            self._q["schedule_fired"],
            {
                "name": name,
                "next_fire_at": row.next_fire_at,
                "due_at": row.due_at,
                "buffered": list(row.buffered),
                "last_run_id": made.run_id,
            },
            "none",
        )
        return made.run_id

    def backfill(
        self, name: str, make: Callable[[ScheduleRow], Sequence[NewRun]]
    ) -> Unit[list[str]]:
        """Create the runs ``make(row)`` lists that do not exist yet; their ids."""
        return Unit(functools.partial(self._backfill, name, make), tx=True)

    def _backfill(
        self, name: str, make: Callable[[ScheduleRow], Sequence[NewRun]]
    ) -> Plan[list[str]]:
        row = yield from self._lock(name)
        created = []
        for run in make(row):
            made: Created = yield from self._runs.create_plan(run)
            if made.created:
                created.append(made.run_id)
        return created

    def set_paused(
        self, name: str, paused: bool, first_tick: Callable[[ScheduleRow, datetime], datetime]
    ) -> Unit[None]:
        """Pause or resume; a resumed schedule fires from its next tick after now (the
        ticks it missed while paused are not caught up)."""
        return Unit(functools.partial(self._set_paused, name, paused, first_tick), tx=True)

    def _set_paused(
        self, name: str, paused: bool, first_tick: Callable[[ScheduleRow, datetime], datetime]
    ) -> Plan[None]:
        row = yield from self._lock(name)
        now = (yield Query(self._q["db_now"]))[0]
        yield Query(
            self._q["schedule_paused"],
            {"name": name, "paused": paused, "next_fire_at": first_tick(row, now)},
        )
        yield from self._family.notify(self._db.work_channel, SCHEDULES_CHANGED)

    def delete(self, name: str) -> Unit[bool]:
        """Delete a schedule (its runs stay); False if there was none."""
        return Unit(functools.partial(self._delete, name))

    def _delete(self, name: str) -> Plan[bool]:
        row = yield Query(self._q["schedule_delete"], {"name": name})
        return row is not None

    def get(self, name: str) -> Unit[ScheduleRow | None]:
        """A schedule (None: no such schedule)."""
        return Unit(functools.partial(self._get, name))

    def _get(self, name: str) -> Plan[ScheduleRow | None]:
        r = yield Query(self._q["schedule_get"], {"name": name})
        return None if r is None else _row(r)

    def all(self) -> Unit[list[ScheduleRow]]:
        """Every schedule, by name."""
        return Unit(self._all)

    def _all(self) -> Plan[list[ScheduleRow]]:
        rows = yield Query(self._q["schedules_list"], None, "all")
        return [_row(r) for r in rows]

    def next_due_in(self) -> Unit[float | None]:
        """Seconds until the earliest due schedule by the database's clock (None: none)."""
        return Unit(self._next_due_in)

    def _next_due_in(self) -> Plan[float | None]:
        row = yield Query(self._q["schedule_next_due"])
        return None if row is None or row[0] is None else float(row[0])

    def _lock(self, name: str) -> Plan[ScheduleRow]:
        from ._errors import ScheduleNotFound

        r = yield Query(self._q["schedule_lock"], {"name": name})
        if r is None:
            raise ScheduleNotFound(name)
        return _row(r)


def _row(r: Sequence[Any]) -> ScheduleRow:
    return ScheduleRow(
        name=r[0],
        workflow=r[1],
        cron=r[2],
        every_seconds=r[3],
        timezone=r[4],
        args=list(r[5] or []),
        overlap=r[6],
        catchup_seconds=float(r[7]),
        queue=r[8],
        paused=bool(r[9]),
        next_fire_at=r[10],
        due_at=r[11],
        buffered=tuple(r[12] or ()),
        last_run_id=r[13],
        last_fired_at=r[14],
    )
