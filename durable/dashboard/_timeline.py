"""A run's timeline, from its log: a bar per step attempt (from the ``started_at`` its
event records to its end), timers, waits and children, laid out on one time axis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .._clock import utcnow
from .._models import Event

__all__ = ["Bar", "Timeline", "timeline"]


@dataclass
class Bar:
    lane: str  # the row label: the step's name, "timer", "signal x", "child wf"
    kind: str  # attempt-ok, attempt-failed, timer, wait, child
    label: str
    start: datetime
    end: datetime | None  # None: still going
    left: float = 0.0  # percent of the axis
    width: float = 0.0
    row: str = ""  # bars with the same row share a line (a step's attempts)


@dataclass
class Timeline:
    start: datetime
    end: datetime
    bars: list[Bar]

    @property
    def lanes(self) -> list[tuple[str, list[Bar]]]:
        """The bars by row, in the order rows first appear: every attempt of a step on
        its step's row (a retry is a second bar on the same row)."""
        rows: dict[str, list[Bar]] = {}
        for bar in self.bars:
            rows.setdefault(bar.row, []).append(bar)
        return [(bars[0].lane, bars) for bars in rows.values()]

    @property
    def seconds(self) -> float:
        return max((self.end - self.start).total_seconds(), 0.0)


def _time(value: Any) -> datetime | None:
    """A timestamp from an event's data (one without a zone is taken as UTC)."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def timeline(events: list[Event], finished_at: datetime | None) -> Timeline | None:
    """The bars of a run's log (None for an empty log)."""
    if not events:
        return None
    bars: list[Bar] = []
    open_timers: dict[int, Bar] = {}
    open_waits: dict[int, Bar] = {}
    open_children: dict[int, Bar] = {}
    for e in events:
        d = e.data if isinstance(e.data, dict) else {}
        pos = d.get("pos")
        if e.type in ("step_completed", "step_attempt_failed", "step_failed"):
            if e.type == "step_failed" and "started_at" not in d:
                continue  # the end of the step, not an attempt of its own
            start = _time(d.get("started_at")) or e.created_at
            ok = e.type == "step_completed"
            attempt = d.get("attempt", d.get("attempts", 1))
            label = f"{d.get('name')} #{attempt}: " + ("ok" if ok else str(d.get("error_type")))
            bars.append(
                Bar(
                    str(d.get("name")),
                    "attempt-ok" if ok else "attempt-failed",
                    label,
                    start,
                    e.created_at,
                    row=f"step {pos} {d.get('name')}",
                )
            )
        elif e.type == "timer_started" and isinstance(pos, int):
            name = d.get("name")
            lane = f"{d.get('kind', 'signal')} {name}" if name is not None else "timer"
            bar = Bar(lane, "wait" if name is not None else "timer", lane, e.created_at, None)
            open_timers[pos] = bar
            open_waits.setdefault(pos, bar)
            bars.append(bar)
        elif e.type == "wait_started" and isinstance(pos, int):
            lane = f"{d.get('kind')} {d.get('name')}"
            bar = Bar(lane, "wait", lane, e.created_at, None)
            open_waits[pos] = bar
            bars.append(bar)
        elif e.type in ("timer_fired", "wait_timed_out") and isinstance(pos, int):
            for table in (open_timers, open_waits):
                ended = table.pop(pos, None)
                if ended is not None and ended.end is None:
                    ended.end = e.created_at
        elif e.type in ("signal_received", "event_received") and isinstance(pos, int):
            for table in (open_waits, open_timers):
                ended = table.pop(pos, None)
                if ended is not None and ended.end is None:
                    ended.end = e.created_at
        elif e.type == "child_started" and isinstance(pos, int):
            lane = f"child {d.get('workflow')}"
            bar = Bar(lane, "child", str(d.get("child_run_id")), e.created_at, None)
            open_children[pos] = bar
            bars.append(bar)
        elif e.type in ("child_completed", "child_failed") and isinstance(pos, int):
            child = open_children.pop(pos, None)
            if child is not None:
                child.end = e.created_at
    start = events[0].created_at
    end = finished_at or events[-1].created_at
    if any(b.end is None for b in bars) and finished_at is None:
        end = max(end, utcnow())
    span = max((end - start).total_seconds(), 1e-6)
    for i, bar in enumerate(bars):
        bar.row = bar.row or f"{i}"
        stop = bar.end or end
        bar.left = max(0.0, min(100.0, (bar.start - start).total_seconds() / span * 100))
        bar.width = max(0.4, min(100.0 - bar.left, (stop - bar.start).total_seconds() / span * 100))
    return Timeline(start, end, bars)
