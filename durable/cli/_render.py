"""Human output: the runs table, a run's details and its history timeline."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import Event, EventType, RunInfo, RunPage, RunStatus

__all__ = [
    "STATUS_STYLES",
    "format_offset",
    "format_time",
    "print_run",
    "runs_table",
    "short",
    "summarize",
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


def summarize(event: Event) -> str:
    """A short description of an event's data, by type."""
    d, t = event.data, event.type
    if t == EventType.RUN_STARTED:
        args = ", ".join(short(a, 30) for a in d.get("args", []))
        return f"{d.get('workflow', '?')}({args})"
    if t == EventType.STEP_COMPLETED:
        return f"{_pos(d)}{d.get('name')} attempt {d.get('attempt', 1)} → {short(d.get('result'))}"
    if t == EventType.STEP_ATTEMPT_FAILED:
        retry = d.get("retry_at")
        when = f"; retry at {format_time(datetime.fromisoformat(retry))}" if retry else ""
        return f"{_pos(d)}{d.get('name')} attempt {d.get('attempt')}: {_error_text(d)}{when}"
    if t == EventType.STEP_FAILED:
        attempts = d.get("attempts")
        noun = "attempt" if attempts == 1 else "attempts"
        return f"{_pos(d)}{d.get('name')} failed after {attempts} {noun}: {_error_text(d)}"
    if t == EventType.TIMER_STARTED:
        fire = d.get("fire_at")
        if not fire:
            return _pos(d).strip()
        fire_at = datetime.fromisoformat(fire)
        delta = (fire_at - event.created_at).total_seconds()
        return f"{_pos(d)}fires at {format_time(fire_at)} (in {format_duration(delta)})"
    if t in (EventType.TIMER_FIRED, EventType.WAIT_TIMED_OUT):
        return _pos(d).strip()
    if t == EventType.SIGNAL_RECEIVED:
        return f"{_pos(d)}{d.get('name')}: {short(d.get('payload'))}"
    if t == EventType.EVENT_RECEIVED:
        return f"{_pos(d)}{d.get('key')}: {short(d.get('payload'))}"
    if t == EventType.CHILD_STARTED:
        return f"{_pos(d)}{d.get('workflow')} run {d.get('child_run_id')}"
    if t == EventType.CHILD_COMPLETED:
        return f"{_pos(d)}run {d.get('child_run_id')} → {short(d.get('result'))}"
    if t == EventType.CHILD_FAILED:
        return f"{_pos(d)}run {d.get('child_run_id')} {d.get('status')}: {_error_text(d)}"
    if t == EventType.PATCH_MARKER:
        return str(d.get("patch_id"))
    if t == EventType.STATUS_SET:
        return short(d.get("value"))
    if t in (EventType.CANCEL_REQUESTED, EventType.RUN_CANCELLED):
        return str(d.get("reason") or "")
    if t == EventType.RUN_BLOCKED:
        return str(d.get("message", ""))
    if t == EventType.RUN_RETRIED:
        voids = d.get("voids") or []
        return f"voids {', '.join(str(v) for v in voids)}" if voids else ""
    if t == EventType.RUN_COMPLETED:
        return short(d.get("result"), 80)
    if t == EventType.RUN_FAILED:
        return _error_text(d)
    if t == EventType.RUN_CONTINUED:
        return f"continued as new with ({', '.join(short(a, 30) for a in d.get('args', []))})"
    return short(d, 80) if d else ""


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def runs_table(page: RunPage) -> Table:
    """The table of ``durable runs``."""
    table = Table(
        caption=f"{len(page.runs)} of {page.total} runs, newest first",
        caption_justify="left",
        header_style="bold",
    )
    id_width = max((len(run.run_id) for run in page.runs), default=6)
    table.add_column("run id", no_wrap=True, min_width=id_width)
    table.add_column("workflow", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("custom status", overflow="fold")
    table.add_column("created", no_wrap=True)
    table.add_column("finished", no_wrap=True)
    for run in page.runs:
        table.add_row(
            Text(run.run_id),
            Text(run.workflow),
            _status(run.status),
            Text("" if run.custom_status is None else short(run.custom_status, 40)),
            Text(format_time(run.created_at)),
            Text(format_time(run.finished_at)),
        )
    return table


def print_run(console: Console, run: RunInfo, history: list[Event]) -> None:
    """The details of ``durable show``: the run, then its history timeline."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("run", Text(run.run_id))
    grid.add_row("workflow", Text(run.workflow))
    grid.add_row("status", _status(run.status))
    grid.add_row("args", Text(short(run.args or [], 200)))
    if run.status == RunStatus.COMPLETED:
        grid.add_row("result", Text(short(run.result, 200)))
    if run.error:
        grid.add_row("error", Text(_error_text(run.error) or short(run.error), style="red"))
    if run.custom_status is not None:
        grid.add_row("custom status", Text(short(run.custom_status, 200)))
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
