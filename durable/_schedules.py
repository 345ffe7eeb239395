"""Schedules: their declarations, the ticks they fire at, and what a due schedule does.

Everything here is pure (no I/O, no clock of its own): the store's firing unit of work
asks :func:`decide` what to do with a due schedule at the database's ``now()``, so the
rules (time zones, DST, catch-up, overlap) are tested with any clock.

**Ticks.** ``every`` ticks fall on whole multiples of the interval since the Unix epoch
(UTC). ``cron`` ticks are computed by ``cronsim`` on the *wall-clock* time of the
schedule's time zone, as naive datetimes, then turned into instants here, which is where
the DST rules live: a local time that occurs twice (clocks go back) fires once, at its
first occurrence; one that does not exist (clocks go forward) fires at the first valid
instant after it (the end of the gap), and several such times of one gap fire once.
``cronsim`` was chosen over ``croniter`` for its small, well-tested evaluator on naive
datetimes (it leaves DST to us, which keeps the rule above ours and testable), its
maintenance record (Healthchecks.io runs it), and no dependencies.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._models import seconds

__all__ = [
    "OVERLAP_POLICIES",
    "Decision",
    "Schedule",
    "decide",
    "run_id_for",
    "tick_text",
]

OVERLAP_POLICIES = ("skip", "buffer_one", "buffer_all", "cancel_other", "allow_all")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: how long the scheduler waits between looks at a schedule with buffered ticks
BUFFER_RECHECK = timedelta(seconds=1)
#: a tick fired this late is on time, whatever the catch-up window (the scheduler looks
#: a little after each tick, by the database's clock)
LATE_GRACE = timedelta(seconds=5)
#: the most ticks counted as skipped (the count is for logs; past it, "at least")
_COUNT_LIMIT = 10_000


@dataclass(frozen=True)
class Schedule:
    """A schedule's declaration (see :meth:`durable.App.schedule`), validated."""

    name: str
    workflow: str
    cron: str | None = None
    every: float | None = None  # seconds
    timezone: str = "UTC"
    args: tuple[Any, ...] = ()
    overlap: str = "skip"
    catchup_window: float = 60.0  # seconds
    queue: str | None = None
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or "@" in self.name:
            raise ValueError(
                f"a schedule needs a name (a non-empty str without '@'), not {self.name!r}"
            )
        if (self.cron is None) == (self.every is None):
            raise ValueError(f"schedule {self.name!r}: pass exactly one of cron= or every=")
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(
                f"schedule {self.name!r}: unknown time zone {self.timezone!r}; use an IANA "
                "name such as 'Europe/Berlin' or 'UTC'"
            ) from None
        object.__setattr__(self, "_zone", zone)
        if self.cron is not None:
            _check_cron(self.name, self.cron)
        else:
            every = seconds(self.every, f"schedule {self.name!r}: every")
            if every is None or every < 1 or every != int(every):
                raise ValueError(
                    f"schedule {self.name!r}: every must be a whole number of seconds, at "
                    f"least 1, not {self.every!r}"
                )
            object.__setattr__(self, "every", float(every))
        if self.overlap not in OVERLAP_POLICIES:
            raise ValueError(
                f"schedule {self.name!r}: unknown overlap {self.overlap!r}; choose one of "
                f"{', '.join(OVERLAP_POLICIES)}"
            )
        window = seconds(self.catchup_window, f"schedule {self.name!r}: catchup_window")
        if window is None or window < 0:
            raise ValueError(
                f"schedule {self.name!r}: catchup_window must not be negative, "
                f"not {self.catchup_window!r}"
            )
        object.__setattr__(self, "catchup_window", window)
        object.__setattr__(self, "args", tuple(self.args))

    # -- ticks -------------------------------------------------------------------------

    def ticks_after(self, after: datetime) -> Iterator[datetime]:
        """The schedule's ticks strictly after ``after``, in order (aware UTC datetimes)."""
        after = after.astimezone(UTC)
        if self.every is not None:
            step = self.every
            n = math.floor((after - _EPOCH).total_seconds() / step) + 1
            while True:
                yield _EPOCH + timedelta(seconds=n * step)
                n += 1
        yield from self._cron_ticks(after)

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after ``after``."""
        return next(self.ticks_after(after))

    def ticks_between(self, start: datetime, end: datetime) -> list[datetime]:
        """The ticks in ``[start, end]`` (both aware)."""
        out = []
        for tick in self.ticks_after(start - timedelta(microseconds=1)):
            if tick > end:
                break
            out.append(tick)
        return out

    def _cron_ticks(self, after: datetime) -> Iterator[datetime]:
        from cronsim import CronSim

        zone = self._zone
        assert self.cron is not None
        # Walk the wall clock from a little before ``after`` (a DST shift moves the local
        # time by at most a few hours), turn each match into an instant, keep the later.
        local = (after.astimezone(zone) - timedelta(hours=3)).replace(tzinfo=None)
        last: datetime | None = None
        for naive in CronSim(self.cron, local.replace(second=0, microsecond=0)):
            instant = _instant(naive, zone)
            if instant <= after or (last is not None and instant <= last):
                continue
            last = instant
            yield instant


def _check_cron(name: str, expression: str) -> None:
    from cronsim import CronSim, CronSimError

    if not isinstance(expression, str) or len(expression.split()) != 5:
        raise ValueError(
            f"schedule {name!r}: cron needs 5 fields (minute hour day month weekday), "
            f"not {expression!r}"
        )
    try:
        CronSim(expression, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"schedule {name!r}: bad cron expression {expression!r}: {exc}") from None


def _instant(naive: datetime, zone: ZoneInfo) -> datetime:
    """The instant a wall-clock time of ``zone`` stands for: its first occurrence when
    it occurs twice, the end of the gap when it does not exist."""
    first = naive.replace(tzinfo=zone, fold=0)
    utc = first.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) == naive:
        return utc  # it exists (fold=0 is its first occurrence when it occurs twice)
    # In a gap: fold=1 reads it with the offset before the change, fold=0 after; the
    # change lies between the two readings. Find it to the second.
    lo = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    hi = utc
    if lo > hi:
        lo, hi = hi, lo
    while (hi - lo) > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).replace(tzinfo=None) < naive:
            lo = mid
        else:
            hi = mid
    return hi.replace(microsecond=0)


def _count_before(schedule: Schedule, start: datetime, end: datetime) -> int:
    """How many ticks fall in ``[start, end)`` (at most ``_COUNT_LIMIT``)."""
    if start >= end:
        return 0
    if schedule.every is not None:
        step = schedule.every
        first = math.ceil((start - _EPOCH).total_seconds() / step)
        last = math.ceil((end - _EPOCH).total_seconds() / step)  # exclusive
        return min(max(last - first, 0), _COUNT_LIMIT)
    count = 0
    for tick in schedule.ticks_after(start - timedelta(microseconds=1)):
        if tick >= end or count >= _COUNT_LIMIT:
            break
        count += 1
    return count


def tick_text(tick: datetime) -> str:
    """A tick as the run id writes it: ``2026-12-02T02:00:00Z``."""
    return tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_id_for(schedule: str, tick: datetime) -> str:
    """The run id of a schedule's tick: exactly one run per tick, whoever starts it."""
    return f"{schedule}@{tick_text(tick)}"


# -- what a due schedule does ----------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What the scheduler does with a due schedule at ``now``: start runs for ``starts``
    (ticks), cancel the previous run first (``cancel_previous``), keep ``buffered`` ticks
    for later, and look at the schedule again at ``due_at``; ``next_fire_at`` is its next
    tick after ``now``."""

    starts: list[datetime]
    cancel_previous: bool
    buffered: list[datetime]
    next_fire_at: datetime
    due_at: datetime
    skipped: int = 0


def decide(
    schedule: Schedule,
    *,
    now: datetime,
    next_fire_at: datetime,
    buffered: list[datetime],
    previous_active: bool,
) -> Decision:
    """The ticks due in ``[next_fire_at, now]``, those older than the catch-up window
    skipped, through the overlap policy (``previous_active``: the schedule's last run
    has not ended)."""
    # Ticks older than the window are not started, nor even listed (a long outage of a
    # one-second schedule must not cost the firing transaction a list of every tick); a
    # tick the scheduler sees within LATE_GRACE of its time is always on time.
    window = max(schedule.catchup_window, LATE_GRACE.total_seconds())
    horizon = now - timedelta(seconds=window)
    fresh = schedule.ticks_between(max(next_fire_at, horizon), now) if next_fire_at <= now else []
    skipped = _count_before(schedule, next_fire_at, horizon)
    buffered = list(buffered)
    starts: list[datetime] = []
    cancel = False
    active = previous_active
    policy = schedule.overlap
    if buffered and not active:
        starts.append(buffered.pop(0))
        active = True
    for tick in fresh:
        if not active or policy == "allow_all":
            starts.append(tick)
            active = True
        elif policy == "skip":
            skipped += 1
        elif policy == "buffer_one":
            if buffered:
                skipped += 1
            else:
                buffered.append(tick)
        elif policy == "buffer_all":
            buffered.append(tick)
        elif policy == "cancel_other":
            cancel = cancel or previous_active
            skipped += len(starts)
            starts = [tick]  # one run: an earlier catch-up tick would be cancelled at once
    nxt = schedule.next_after(now)
    due_at = min(nxt, now + BUFFER_RECHECK) if buffered else nxt
    return Decision(starts, cancel, buffered, nxt, due_at, skipped)
