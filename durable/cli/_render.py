"""Human output: the runs table, a run's details and its history timeline."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .. import (
    Event,
    EventType,
    QueueInfo,
    RunInfo,
    RunPage,
    RunStatus,
    ScheduleInfo,
    WorkerInfo,
)
from .._models import limits_text

__all__ = [
    "STATUS_STYLES",
    "format_offset",
    "format_time",
    "print_run",
    "runs_table",
    "short",
    "short_ids",
    "stats_tables",
    "summarize",
    "waiting_for",
    "workers_table",
]

STATUS_STYLES: dict[str, str] = {
    RunStatus.PENDING: "dim",
    RunStatus.RUNNING: "cyan",
    RunStatus.WAITING: "blue",
    RunStatus.PAUSED: "yellow",
    RunStatus.COMPLETED: "green",
    RunStatus.FAILED: "bold red",
    RunStatus.CANCELLED: "magenta",
    RunStatus.TIMED_OUT: "magenta",
    RunStatus.BLOCKED: "bold red",
}
"""The colour of each status."""

_FAILURES = (
    EventType.STEP_ATTEMPT_FAILED,
    EventType.STEP_FAILED,
    EventType.RUN_FAILED,
    EventType.RUN_BLOCKED,
    EventType.CHILD_FAILED,
)


def format_time(value: datetime | None) -> str:
    """A timestamp in local time, to the second; empty for None."""
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_offset(seconds: float) -> str:
    """A time offset for the timeline: ``+0.004s``, ``+12.5s``, ``+3m04s``, ``+2h03m``."""
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"+{seconds:.3f}s"
    if seconds < 60:
        return f"+{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"+{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"+{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"+{days}d{hours:02d}h"


def format_duration(seconds: float) -> str:
    """A duration without the sign: ``0.412s``, ``3m04s``."""
    return format_offset(seconds)[1:]


def short(value: Any, width: int = 60) -> str:
    """Compact JSON of ``value``, cut to ``width`` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _error_text(data: dict[str, Any]) -> str:
    kind, message = data.get("error_type"), data.get("message")
    if kind and message:
        return f"{kind}: {message}"
    return str(kind or message or "")


def _pos(data: dict[str, Any]) -> str:
    return f"#{data['pos']} " if data.get("pos") is not None else ""


def _value(value: Any, width: int = 60) -> str:
    """A stored value for humans: a string as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value if len(value) <= width else value[: width - 1] + "…"
    return short(value, width)


def _when(iso: Any) -> str:
    """An ISO timestamp from the log, in local time; the raw text if it does not parse."""
    try:
        return format_time(datetime.fromisoformat(str(iso)))
    except ValueError:
        return str(iso)


def _in(iso: Any, since: datetime) -> str:
    """`` (in 2d00h)``: how long after ``since`` an ISO timestamp falls (empty if not)."""
    try:
        delta = (datetime.fromisoformat(str(iso)) - since).total_seconds()
    except (TypeError, ValueError):
        return ""
    return f" (in {format_duration(delta)})" if delta > 0 else ""


def _overdue(iso: Any) -> str:
    """`` (overdue: is a worker running?)`` for a time more than a few seconds past."""
    try:
        past = (datetime.now(UTC) - datetime.fromisoformat(str(iso))).total_seconds()
    except (TypeError, ValueError):
        return ""
    return " (overdue: is a worker running?)" if past > 5 else ""


def _waited(data: dict[str, Any]) -> str:
    """``signal 'approve'`` / ``event 'go'``: what a wait waits for, from ``kind, name``."""
    kind = data.get("kind") or "signal or event"
    return f"{kind} {data.get('name')!r}"


def _attempt_took(d: dict[str, Any], ended: datetime) -> str:
    """`` (12 ms)``: how long the attempt ran, from the ``started_at`` its event records."""
    started = d.get("started_at")
    if not isinstance(started, str):
        return ""
    try:
        seconds = (ended - datetime.fromisoformat(started)).total_seconds()
    except ValueError:
        return ""
    if seconds < 1:
        return f" ({max(seconds, 0) * 1000:.0f} ms)"
    return f" ({seconds:.1f} s)"


def summarize(event: Event) -> str:
    """A short description of an event's data, by type (every type has one)."""
    d, t = event.data, event.type
    if not isinstance(d, dict):  # a hand-edited log
        return short(d, 80)
    if t == EventType.RUN_STARTED:
        args = ", ".join(short(a, 30) for a in d.get("args", []))
        again = " (continued as new)" if d.get("continued") else ""
        return f"{d.get('workflow', '?')}({args}){again}"
    if t == EventType.STEP_COMPLETED:
        took = _attempt_took(d, event.created_at)
        return (
            f"{_pos(d)}{d.get('name')} attempt {d.get('attempt', 1)}{took} → "
            f"{short(d.get('result'))}"
        )
    if t == EventType.STEP_ATTEMPT_FAILED:
        retry = d.get("retry_at")
        when = f"; retry at {_when(retry)}" if retry else ""
        took = _attempt_took(d, event.created_at)
        return f"{_pos(d)}{d.get('name')} attempt {d.get('attempt')}{took}: {_error_text(d)}{when}"
    if t == EventType.STEP_FAILED:
        attempts = d.get("attempts")
        noun = "attempt" if attempts == 1 else "attempts"
        return f"{_pos(d)}{d.get('name')} failed after {attempts} {noun}: {_error_text(d)}"
    if t == EventType.TIMER_STARTED:
        fire = d.get("fire_at")
        if not fire:
            return f"{_pos(d)}timer started"
        due = f"{_when(fire)}{_in(fire, event.created_at)}"
        if d.get("name") is not None:  # the timeout of a wait
            return f"{_pos(d)}waiting for {_waited(d)} until {due}"
        return f"{_pos(d)}fires at {due}: a sleep or a wait's timeout"
    if t == EventType.WAIT_STARTED:
        return f"{_pos(d)}waiting for {_waited(d)} (no timeout)"
    if t == EventType.TIMER_FIRED:
        return f"{_pos(d)}timer fired"
    if t == EventType.WAIT_TIMED_OUT:
        return f"{_pos(d)}wait timed out (durable.WaitTimeout raised)"
    if t == EventType.SIGNAL_RECEIVED:
        return f"{_pos(d)}signal {d.get('name')!r}: {short(d.get('payload'))}"
    if t == EventType.EVENT_RECEIVED:
        return f"{_pos(d)}event {d.get('key')!r}: {short(d.get('payload'))}"
    if t == EventType.CHILD_STARTED:
        return f"{_pos(d)}{d.get('workflow')} run {d.get('child_run_id')}"
    if t == EventType.CHILD_COMPLETED:
        return f"{_pos(d)}run {d.get('child_run_id')} → {short(d.get('result'))}"
    if t == EventType.CHILD_FAILED:
        return f"{_pos(d)}run {d.get('child_run_id')} {d.get('status')}: {_error_text(d)}"
    if t == EventType.PATCH_MARKER:
        return f"patch {d.get('patch_id')!r}"
    if t == EventType.STATUS_SET:
        return f"custom status: {_value(d.get('value'))}"
    if t == EventType.CANCEL_REQUESTED:
        reason = d.get("reason")
        return f"durable.Cancelled raised at the current yield; reason: {reason or '(none)'}"
    if t == EventType.RUN_PAUSED:
        return "paused: stops at its next yield until resumed"
    if t == EventType.RUN_RESUMED:
        return "resumed"
    if t == EventType.RUN_BLOCKED:
        return f"{d.get('message', '')}; fix the code, then `durable retry`"
    if t == EventType.RUN_RETRIED:
        voids = d.get("voids") or []
        skipped = f"; events {', '.join(str(v) for v in voids)} no longer count" if voids else ""
        return f"retried{skipped}"
    if t == EventType.RUN_COMPLETED:
        return f"→ {short(d.get('result'), 80)}"
    if t == EventType.RUN_FAILED:
        return _error_text(d)
    if t == EventType.RUN_CANCELLED:
        return f"cancelled; reason: {d.get('reason') or '(none)'}"
    if t == EventType.RUN_TIMED_OUT:
        return "the workflow's timeout passed"
    if t == EventType.RUN_CONTINUED:
        return f"continued as new with ({', '.join(short(a, 30) for a in d.get('args', []))})"
    return short(d, 80) if d else ""


def waiting_for(run: RunInfo, history: list[Event]) -> list[str]:
    """What an unfinished run waits for, read from its log: a signal or event (with its
    deadline), a timer, a child run, a step's retry; also a resume, a worker or a fix."""
    if run.status in _ENDED:
        return []
    voided: set[int] = set()
    for event in history:
        if event.type == EventType.RUN_RETRIED and isinstance(event.data, dict):
            voided.update(v for v in event.data.get("voids") or [] if isinstance(v, int))
    waits: dict[Any, str] = {}
    for event in history:
        d, t = event.data, event.type
        if event.seq in voided or not isinstance(d, dict):
            continue
        pos = d.get("pos")
        if t == EventType.RUN_STARTED:
            waits.clear()  # a new history (continue-as-new)
        elif t == EventType.STEP_ATTEMPT_FAILED and d.get("retry_at"):
            waits[pos] = (
                f"step {d.get('name')!r} retry at {_when(d['retry_at'])}{_overdue(d['retry_at'])} "
                f"(attempt {d.get('attempt')} failed: {_error_text(d)})"
            )
        elif t == EventType.TIMER_STARTED and d.get("fire_at"):
            until = f"{_when(d['fire_at'])}{_overdue(d['fire_at'])}"
            if d.get("name") is not None:
                waits[pos] = f"{_waited(d)} (until {until})"
            else:
                waits[pos] = f"timer until {until} (a sleep or a wait's timeout)"
        elif t == EventType.WAIT_STARTED:
            waits[pos] = f"{_waited(d)} (no timeout)"
        elif t == EventType.CHILD_STARTED:
            waits[pos] = f"child run {d.get('child_run_id')} ({d.get('workflow')})"
        elif t in _RESOLVING:
            waits.pop(pos, None)
    found = list(waits.values())
    if run.status == RunStatus.PAUSED:
        found.insert(0, "`durable resume` (the run is paused)")
    elif run.status == RunStatus.BLOCKED:
        found = ["a fix of the workflow code, then `durable retry` (the run is blocked)"]
    elif run.status == RunStatus.PENDING and not found:
        found = ["a worker to start it (`durable worker APP`)"]
    return found


_ENDED = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT}
)
_RESOLVING = frozenset(
    {
        EventType.STEP_COMPLETED,
        EventType.STEP_FAILED,
        EventType.TIMER_FIRED,
        EventType.SIGNAL_RECEIVED,
        EventType.EVENT_RECEIVED,
        EventType.WAIT_TIMED_OUT,
        EventType.CHILD_COMPLETED,
        EventType.CHILD_FAILED,
    }
)


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def short_ids(run_ids: list[str], minimum: int = 8) -> dict[str, str]:
    """Each id with its root (the part before the first ``:``; a child's id is its
    parent's followed by ``:pos``) cut to the shortest prefix of at least ``minimum``
    characters that no other root of ``run_ids`` starts with, as git abbreviates commits.
    ``App.resolve_run_id`` resolves every such form."""
    roots = sorted({run_id.partition(":")[0] for run_id in run_ids})
    cut: dict[str, str] = {}
    for i, root in enumerate(roots):
        common = 0
        for j in (i - 1, i + 1):
            if 0 <= j < len(roots):
                common = max(common, _common_prefix(root, roots[j]))
        # Ids people choose (order-2024-0042) stay whole; generated ones (uuid) are cut.
        keep = len(root) if len(root) <= _KEEP_WHOLE else max(minimum, common + 1)
        cut[root] = root[:keep]
    out: dict[str, str] = {}
    for run_id in run_ids:
        root, colon, rest = run_id.partition(":")
        out[run_id] = cut[root] + colon + rest
    return out


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


_KEEP_WHOLE = 16  # run id roots this short are never cut
_GAP = 2  # characters between two columns of the runs table
_CUSTOM_MIN = 12  # the custom status column is dropped rather than made narrower
_TIME = "%Y-%m-%d %H:%M:%S"
_SHORT_TIME = "%Y-%m-%d %H:%M"


class _Layout:
    """The widths of the columns of the runs table, narrowed step by step to fit."""

    def __init__(self, page: RunPage, customs: list[str], took: list[str]) -> None:
        self.ids = {run.run_id: run.run_id for run in page.runs}
        self.id = _widest("run id", self.ids.values())
        self.workflow = _widest("workflow", (run.workflow for run in page.runs))
        self.status = _widest("status", (run.status for run in page.runs))
        self.time_format = _TIME
        self.created = len("2000-01-01 00:00:00")
        self.took = _widest("took", took)
        self.custom_wanted = _widest("custom status", customs) if any(customs) else 0
        self.custom = self.custom_wanted

    def total(self, custom: int | None = None) -> int:
        custom = self.custom if custom is None else custom
        widths = [self.id, self.workflow, self.status, self.created, self.took, custom]
        shown = [w for w in widths if w]
        return sum(shown) + _GAP * (len(shown) - 1)

    def fit(self, width: int, page: RunPage) -> None:
        if self.total() <= width:
            return
        self.ids = short_ids(list(self.ids))
        self.id = _widest("run id", self.ids.values())
        steps = (self._short_times, self._no_took, self._narrow_workflow, self._cut_ids)
        for step in (None, *steps):
            if step is not None:
                step(width)
            spare = width - self.total(custom=0) - _GAP
            self.custom = min(self.custom_wanted, spare) if spare >= _CUSTOM_MIN else 0
            if self.total() <= width and (self.custom or not self.custom_wanted):
                return

    def _short_times(self, width: int) -> None:
        self.time_format, self.created = _SHORT_TIME, len("2000-01-01 00:00")

    def _no_took(self, width: int) -> None:
        self.took = 0

    def _narrow_workflow(self, width: int) -> None:
        over = self.total(custom=0) + _GAP + _CUSTOM_MIN - width
        self.workflow = max(len("workflow"), self.workflow - max(over, 0))

    def _cut_ids(self, width: int) -> None:
        over = self.total(custom=0) - width
        self.id = max(len("run id"), self.id - max(over, 0))


def _widest(header: str, values: Iterable[str]) -> int:
    return max([len(header), *(len(v) for v in values)])


def runs_table(page: RunPage, width: int = 200) -> Table:
    """The table of ``durable runs``, fitted to ``width`` columns; the status is never cut.
    When the full run ids do not fit they are shortened to unique prefixes (which every
    command accepts); ``--json`` always has them in full."""
    customs = [_custom(run.custom_status) for run in page.runs]
    took = [_took(run) for run in page.runs]
    layout = _Layout(page, customs, took)
    layout.fit(width, page)
    caption = f"{len(page.runs)} of {page.total} runs, newest first"
    if any(shown != run_id for run_id, shown in layout.ids.items()):
        caption += "; run ids shortened (in full with --json)"
    table = Table(
        caption=caption,
        caption_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("run id", no_wrap=True, width=layout.id)
    table.add_column("workflow", no_wrap=True, width=layout.workflow)
    table.add_column("status", no_wrap=True, width=layout.status)
    if layout.custom:
        table.add_column("custom status", no_wrap=True, width=layout.custom)
    table.add_column("created", no_wrap=True, width=layout.created)
    if layout.took:
        table.add_column("took", no_wrap=True, justify="right", width=layout.took)
    for run, text, duration in zip(page.runs, customs, took, strict=True):
        cells = [Text(layout.ids[run.run_id]), Text(run.workflow), _status(run.status)]
        if layout.custom:
            cells.append(Text(text))
        created = run.created_at.astimezone().strftime(layout.time_format)
        cells.append(Text(created))
        if layout.took:
            cells.append(Text(duration))
        table.add_row(*cells)
    return table


def _custom(value: Any) -> str:
    return "" if value is None else _value(value, 60)


def _took(run: RunInfo) -> str:
    if run.finished_at is None:
        return ""
    return format_duration((run.finished_at - run.created_at).total_seconds())


def print_run(console: Console, run: RunInfo, history: list[Event]) -> None:
    """The details of ``durable show``: the run, then its history timeline."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("run", Text(run.run_id))
    grid.add_row("workflow", Text(run.workflow))
    grid.add_row("status", _status(run.status))
    if run.pending_reason is not None:
        grid.add_row("not started", Text(run.pending_reason))
    waits = waiting_for(run, history)
    if waits:
        grid.add_row("waiting for", Text("\n".join(waits)))
    if run.queue is not None:
        queue = f"{run.queue} (priority {run.priority}"
        queue += f", key {run.concurrency_key})" if run.concurrency_key is not None else ")"
        grid.add_row("queue", Text(queue))
    grid.add_row("args", Text(short(run.args or [], 200)))
    if run.status == RunStatus.COMPLETED:
        grid.add_row("result", Text(short(run.result, 200)))
    if run.error:
        grid.add_row("error", Text(_error_text(run.error) or short(run.error), style="red"))
    if run.custom_status is not None:
        grid.add_row("custom status", Text(_value(run.custom_status, 200)))
    grid.add_row("created", Text(format_time(run.created_at)))
    if run.started_at is not None:
        grid.add_row("started", Text(format_time(run.started_at)))
    if run.finished_at is not None:
        took = (run.finished_at - run.created_at).total_seconds()
        grid.add_row(
            "finished", Text(f"{format_time(run.finished_at)} (after {format_duration(took)})")
        )
    if run.idempotency_key is not None:
        grid.add_row("idempotency key", Text(run.idempotency_key))
    if run.parent_run_id is not None:
        grid.add_row("parent run", Text(run.parent_run_id))
    if run.source_run_id is not None:
        grid.add_row("source run", Text(f"{run.source_run_id} (rerun or fork of)"))
    console.print(grid)
    console.print()
    console.print(Text(f"history ({len(history)} events)", style="bold"))
    if not history:
        return
    timeline = Table(header_style="bold", show_edge=False, pad_edge=False)
    timeline.add_column("seq", justify="right", no_wrap=True)
    timeline.add_column("time", justify="right", no_wrap=True)
    timeline.add_column("type", no_wrap=True)
    timeline.add_column("details", overflow="fold")
    first = history[0].created_at
    for event in history:
        style = "red" if event.type in _FAILURES else ""
        timeline.add_row(
            str(event.seq),
            format_offset((event.created_at - first).total_seconds()),
            Text(event.type, style=style),
            Text(summarize(event)),
        )
    console.print(timeline)


def stats_tables(stats: dict[str, Any]) -> Group:
    """The tables of ``durable stats``: runs by status, then by workflow."""
    order = {str(status): i for i, status in enumerate(RunStatus)}
    by_status: dict[str, int] = stats.get("by_status", {})
    by_workflow: dict[str, dict[str, int]] = stats.get("by_workflow", {})
    statuses = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        header_style="bold",
    )
    statuses.add_column("status", no_wrap=True)
    statuses.add_column("runs", justify="right", no_wrap=True)
    for status in sorted(by_status, key=lambda s: order.get(s, len(order))):
        statuses.add_row(_status(status), str(by_status[status]))
    statuses.add_row(Text("total", style="bold"), Text(str(stats.get("total", 0)), style="bold"))
    workflows = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        header_style="bold",
    )
    workflows.add_column("workflow", overflow="fold")
    workflows.add_column("runs", justify="right", no_wrap=True)
    workflows.add_column("by status", overflow="fold")
    for workflow in sorted(by_workflow):
        counts = by_workflow[workflow]
        parts = Text()
        for status in sorted(counts, key=lambda s: order.get(s, len(order))):
            if parts:
                parts.append(", ")
            parts.append(f"{counts[status]} ")
            parts.append(status, style=STATUS_STYLES.get(status, ""))
        workflows.add_row(Text(workflow), str(sum(counts.values())), parts)
    return Group(statuses, Text(), workflows)


def _listing(count: int, thing: str) -> Table:
    """A plain table of ``count`` things, counted in its caption."""
    return Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        header_style="bold",
        caption=f"{count} {thing}{'s' if count != 1 else ''}",
        caption_justify="left",
    )


def queues_table(queues: list[QueueInfo]) -> Table:
    """The table of ``durable queues``: one row a queue, then its busiest keys."""
    table = _listing(len(queues), "queue")
    table.add_column("queue", overflow="fold")
    table.add_column("running", justify="right", no_wrap=True)
    table.add_column("pending", justify="right", no_wrap=True)
    table.add_column("limits", overflow="fold")
    for q in queues:
        limits = limits_text(q.concurrency, q.worker_concurrency, q.key_concurrency, q.rate_limit)
        running = f"{q.running}/{q.concurrency}" if q.concurrency is not None else str(q.running)
        table.add_row(Text(q.name), running, str(q.pending), Text(limits))
        for key, counts in q.busiest_keys.items():
            table.add_row(
                Text(f"  key {key}", style="dim"),
                Text(f"{counts['running']}/{q.key_concurrency}", style="dim"),
                Text(str(counts["pending"]), style="dim"),
                "",
            )
    return table


def _interval(seconds: float) -> str:
    """An ``every`` interval in its largest whole unit: ``90s``, ``5m``, ``2h``, ``1d``."""
    whole = int(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if whole >= size and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def schedules_table(schedules: list[ScheduleInfo]) -> Table:
    """The table of ``durable schedules``: when, the next fire times, the last run."""
    table = _listing(len(schedules), "schedule")
    table.add_column("schedule", overflow="fold")
    table.add_column("when", overflow="fold")
    table.add_column("next", no_wrap=True)
    table.add_column("last run", overflow="fold")
    for s in schedules:
        when = s.cron if s.cron is not None else f"every {_interval(s.every or 0)}"
        if s.timezone != "UTC":
            when += f" {s.timezone}"
        when += f", {s.overlap}"
        if s.paused:
            upcoming = Text("paused", style="yellow")
        else:
            now = datetime.now(UTC)
            upcoming = Text(
                "\n".join(
                    format_time(t) + (" (due)" if t <= now else "") for t in s.next_fire_times[:3]
                )
            )
        last = s.last_run_id.split("@", 1)[1] if s.last_run_id and "@" in s.last_run_id else "-"
        table.add_row(Text(f"{s.name}\n{s.workflow}"), Text(when), upcoming, Text(last))
    return table


def workers_table(workers: list[WorkerInfo]) -> Table:
    """The table of ``durable workers``: who, how busy, since when, what it serves."""
    table = _listing(len(workers), "live worker")
    table.add_column("worker", overflow="fold")
    table.add_column("runs", justify="right", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("seen", justify="right", no_wrap=True)
    table.add_column("serves", overflow="fold")
    now = datetime.now(UTC)
    for w in workers:
        serves = "workflows " + (", ".join(w.workflows) or "none")
        if w.queues:
            serves += "\nqueues " + ", ".join(w.queues)
        seen = max((now - w.last_seen).total_seconds(), 0.0)
        table.add_row(
            Text(w.worker_id),
            f"{w.runs_held}/{w.concurrency}",
            Text(format_time(w.started_at)),
            f"{seen:.0f}s ago",
            Text(serves),
        )
    return table
