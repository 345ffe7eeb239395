"""The commands: each takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TypeVar

import pydantic
import pydantic_core
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from .. import (
    App,
    InvalidArgument,
    PruneResult,
    Rate,
    RunHandle,
    RunInfo,
    RunStatus,
    ScheduleNotFound,
    embedded,
)
from ._common import (
    CliError,
    bare_app,
    check_embedded,
    err_console,
    load_app,
    note_database,
    one_line,
    out_console,
    parse_duration,
    parse_json,
    print_json,
)
from ._render import (
    format_time,
    print_run,
    queues_table,
    runs_table,
    schedules_table,
    stats_tables,
    workers_table,
)

__all__ = [
    "cmd_db",
    "cmd_emit",
    "cmd_export",
    "cmd_fork",
    "cmd_operate",
    "cmd_prune",
    "cmd_queues",
    "cmd_replay",
    "cmd_rerun",
    "cmd_runs",
    "cmd_schedules",
    "cmd_show",
    "cmd_signal",
    "cmd_start",
    "cmd_stats",
    "cmd_worker",
    "cmd_workers",
]

#: the models a listing prints
M = TypeVar("M", bound=pydantic.BaseModel)


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (objects JSON cannot hold become their repr)."""
    return pydantic_core.to_jsonable_python(value, fallback=repr)


def _note(message: str, *, dim: bool = True) -> None:
    """One line on stderr: progress and notes (dim), or what did or did not happen."""
    err_console().print(Text(message, style="dim" if dim else ""))


# -- running ------------------------------------------------------------------------------


class _Stop(Exception):
    """SIGTERM arrived before the worker was running (so there is nothing to wind down)."""


def _stop_early(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def cmd_worker(args: argparse.Namespace) -> int:
    """``durable worker APP``: run a worker until SIGINT/SIGTERM."""
    # Until the worker installs its own graceful handlers, SIGTERM just ends the command.
    previous = signal.signal(signal.SIGTERM, _stop_early)
    try:
        return _run_worker(args)
    except _Stop:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_worker(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    options: dict[str, Any] = {}
    if args.lease_seconds is not None:
        options["lease_seconds"] = args.lease_seconds
    if args.poll_interval is not None:
        options["poll_interval"] = args.poll_interval
    with load_app(args.app, args) as app:
        _ = app.dsn  # connect and migrate now, so a bad DSN fails before we start
        names = ", ".join(sorted(app.workflows)) or "none"
        _note(
            f"pgdurable worker: concurrency {args.concurrency}, workflows: {names}; "
            "stop with Ctrl-C or SIGTERM"
        )
        app.run_worker(concurrency=args.concurrency, **options)
    _note("pgdurable worker: stopped")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    """``durable start APP WORKFLOW [ARG_JSON ...]``: start a run, print its id (or, with
    ``--wait``, its result)."""
    values = [parse_json(raw, f"argument {i}") for i, raw in enumerate(args.args, start=1)]
    with load_app(args.app, args) as app:
        try:
            handle = app.start(
                args.workflow, *values, run_id=args.run_id, idempotency_key=args.idempotency_key
            )
        except TypeError as exc:
            raise CliError(f"{one_line(str(exc))}, one ARG_JSON each") from None
        # The run id first: without --wait it is the output; with --wait a human sees it
        # before the wait (a script reads only the result from stdout, the id on stderr).
        if not args.wait or sys.stdout.isatty():
            print(handle.run_id, flush=True)
        if not handle.created:
            _note(_existing_run(app.get_run(handle.run_id), args), dim=False)
        if not args.wait:
            return 0
        result = _wait_for_result(app, handle, args)
        print_json(_jsonable(result))
    return 0


_QUIET_WAIT = 1.0  # seconds a --wait stays silent: a run that ends by then needs no note


def _wait_for_result(app: App, handle: RunHandle, args: argparse.Namespace) -> Any:
    """The run's result; once the run has taken a moment, a note on stderr says what is
    awaited and whether a live worker serves its workflow. ``--timeout`` ends the wait
    with exit status 1."""
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        return handle.result(timeout=min(_QUIET_WAIT, args.timeout or _QUIET_WAIT))
    except TimeoutError:
        pass
    limit = f" (at most {args.timeout:g}s)" if args.timeout is not None else ""
    workflow = app.get_run(handle.run_id).workflow
    serving = [w for w in app.workers() if workflow in w.workflows]
    if len(serving) == 1:
        who = f"1 live worker serves workflow {workflow!r}"
    elif serving:
        who = f"{len(serving)} live workers serve workflow {workflow!r}"
    else:
        who = (
            f"no live worker serves workflow {workflow!r}: start one with "
            f"`durable worker {args.app}`"
        )
    _note(
        f"waiting for run {handle.run_id} to end{limit}; {who}; Ctrl-C stops the waiting, "
        "not the run"
    )
    left = None if deadline is None else deadline - time.monotonic()
    try:
        if left is not None and left <= 0:
            raise TimeoutError
        return handle.result(timeout=left)
    except TimeoutError:
        raise CliError(
            f"run {handle.run_id} did not finish within {args.timeout:g}s "
            f"(status {handle.status()}); is a worker running?",
            code=1,
        ) from None


def _existing_run(run: RunInfo, args: argparse.Namespace) -> str:
    """What ``durable start`` found instead of starting a run."""
    if args.run_id is not None and run.run_id == args.run_id:
        why = f"a run with id {run.run_id!r} exists"
    else:
        why = f"run {run.run_id} has idempotency key {args.idempotency_key!r}"
    return (
        f"existing run: {why} (workflow {run.workflow}, status {run.status}); "
        "nothing new was started"
    )


# -- inspecting ---------------------------------------------------------------------------


def cmd_runs(args: argparse.Namespace) -> int:
    """``durable runs``: a table of runs, newest first."""
    with bare_app(args, read_only=True) as app:
        schema = app.schema
        page = app.list_runs(
            workflow=args.workflow,
            status=args.status,
            search=args.search,
            limit=args.limit,
            offset=args.offset,
        )
    if args.json:
        print_json(page.model_dump(mode="json", fallback=repr))
        return 0
    console = out_console()
    if not page.runs:
        console.print(f"no runs (of {page.total} matching)" if page.total else "no runs")
    else:
        console.print(runs_table(page, width=console.width))
    note_database(args, schema)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """``durable show RUN_ID``: the run and its history timeline."""
    with bare_app(args, read_only=True) as app:
        run_id = app.resolve_run_id(args.run_id)
        run = app.get_run(run_id)
        history = app.history(run_id)
        schema = app.schema
    if args.json:
        data = run.model_dump(mode="json", fallback=repr)
        data["history"] = [e.model_dump(mode="json") for e in history]
        print_json(data)
        return 0
    print_run(out_console(), run, history)
    note_database(args, schema)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``durable export RUN_ID``: the run and its log as JSON."""
    with bare_app(args, read_only=True) as app:
        print_json(app.export(app.resolve_run_id(args.run_id)))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """``durable stats``: how many runs there are, by status and by workflow."""
    with bare_app(args, read_only=True) as app:
        stats = app.stats()
        schema = app.schema
    if args.json:
        print_json(stats)
        return 0
    console = out_console()
    if not stats.get("total"):
        console.print("no runs")
    else:
        console.print(stats_tables(stats))
    note_database(args, schema)
    return 0


def cmd_queues(args: argparse.Namespace) -> int:
    """``durable queues [set NAME --concurrency N ...]``: the queues, or a change of one."""
    if args.action == "set":
        if not args.name:
            raise CliError("durable queues set needs the queue's NAME")
        changes = _queue_changes(args)
        if not changes:
            raise CliError(
                "say what to change: --concurrency, --worker-concurrency, --key-concurrency "
                "or --rate (N, N/SECONDS, or none)"
            )
        with bare_app(args) as app:
            try:
                queue = app.client.update_queue(args.name, **changes)
            except InvalidArgument as exc:
                raise CliError(str(exc)) from None
        out_console().print(f"queue {queue.name!r}: {queue.describe()}")
        return 0
    if args.name or any(
        v is not None
        for v in (args.concurrency, args.worker_concurrency, args.key_concurrency, args.rate)
    ):
        raise CliError("to change a queue, say `durable queues set NAME --concurrency N ...`")
    return _print_listing(
        args, App.queues, queues_table, "no queues (declare one with app.queue(NAME, ...))"
    )


def _queue_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for option, name in (
        ("concurrency", "concurrency"),
        ("worker_concurrency", "worker_concurrency"),
        ("key_concurrency", "key_concurrency"),
    ):
        given = getattr(args, option)
        if given is None:
            continue
        if given.strip().lower() == "none":
            changes[name] = None
            continue
        try:
            value = int(given)
        except ValueError:
            value = 0
        if value < 1:
            flag = "--" + option.replace("_", "-")
            raise CliError(f"{flag} takes a positive whole number or none, not {given!r}")
        changes[name] = value
    if args.rate is not None:
        changes["rate_limit"] = _rate(args.rate)
    return changes


def _rate(text: str) -> Rate | None:
    if text.strip().lower() == "none":
        return None
    limit, _, per = text.partition("/")
    try:
        return Rate(int(limit), per=float(per) if per else 1.0)
    except ValueError:
        raise CliError(
            f"--rate takes N/SECONDS (at most N starts in any SECONDS), like 100/60, or none; "
            f"not {text!r}"
        ) from None


def cmd_schedules(args: argparse.Namespace) -> int:
    """``durable schedules [ACTION] [NAME]``: list the schedules, or act on one."""
    action = args.action
    if action == "list":
        if args.name:
            raise CliError(f"durable schedules list takes no NAME (got {args.name!r})")
        return _print_listing(
            args,
            App.list_schedules,
            schedules_table,
            "no schedules (workers write them when they start)",
        )
    if not args.name:
        raise CliError(f"durable schedules {action} needs the schedule's NAME")
    if action != "backfill" and (args.start or args.end):
        raise CliError("--start and --end go with durable schedules backfill")
    console = out_console()
    with bare_app(args) as app:
        try:
            if action == "pause":
                app.pause_schedule(args.name)
                console.print(f"schedule {args.name!r} paused")
            elif action == "resume":
                app.resume_schedule(args.name)
                console.print(f"schedule {args.name!r} resumed")
            elif action == "delete":
                app.delete_schedule(args.name)
                console.print(f"schedule {args.name!r} deleted (its runs stay)")
            elif action == "trigger":
                handle = app.trigger_schedule(args.name)
                if args.json:
                    print_json({"run_id": handle.run_id})
                else:
                    console.print(handle.run_id)
            else:
                start, end = _instant(args.start, "--start"), _instant(args.end, "--end")
                handles = app.backfill_schedule(args.name, start, end)
                if args.json:
                    print_json([h.run_id for h in handles])
                else:
                    for h in handles:
                        console.print(h.run_id)
                    console.print(f"{len(handles)} run(s) started")
        except ScheduleNotFound as exc:
            raise CliError(str(exc)) from None
        except ValueError as exc:
            raise CliError(str(exc)) from None
    return 0


def _instant(text: str | None, flag: str) -> datetime:
    if not text:
        raise CliError(f"durable schedules backfill needs {flag} ISO (such as 2026-11-01T00:00Z)")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            f"{flag} takes an ISO date-time, such as 2026-11-01T00:00Z; not {text!r}"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def cmd_workers(args: argparse.Namespace) -> int:
    """``durable workers``: the live workers (each heartbeats its row in the registry)."""
    return _print_listing(
        args, App.workers, workers_table, "no live workers (start one with `durable worker APP`)"
    )


def _print_listing(
    args: argparse.Namespace,
    read: Callable[[App], Sequence[M]],
    table: Callable[[list[M]], Any],
    empty: str,
) -> int:
    """A read-only listing (``durable workers``, ``queues``, ``schedules``): ``--json``
    prints the models as a JSON list; else their table, or ``empty`` when there are none."""
    with bare_app(args, read_only=True) as app:
        items = list(read(app))
        schema = app.schema
    if args.json:
        print_json([item.model_dump(mode="json") for item in items])
        return 0
    console = out_console()
    console.print(table(items) if items else empty)
    note_database(args, schema)
    return 0


# -- talking to runs ----------------------------------------------------------------------


def cmd_signal(args: argparse.Namespace) -> int:
    """``durable signal RUN_ID NAME [PAYLOAD_JSON]``."""
    payload = None if args.payload is None else parse_json(args.payload, "PAYLOAD_JSON")
    with _run_app(args) as (app, run_id):
        app.signal(run_id, args.name, payload)
    print(f"signal {args.name!r} sent to run {run_id}")
    return 0


def cmd_emit(args: argparse.Namespace) -> int:
    """``durable emit KEY [PAYLOAD_JSON]``: a latched event; the first emission wins."""
    payload = None if args.payload is None else parse_json(args.payload, "PAYLOAD_JSON")
    with bare_app(args) as app:
        first = app.emit_event(args.key, payload)
    if first:
        print(f"event {args.key!r} emitted")
    else:
        print(f"event {args.key!r} was emitted before; the first payload is kept")
    return 0


_OPERATIONS = {
    "pause": "pause requested: the run stops at its next yield",
    "resume": "resumed",
    "cancel": "cancel requested: durable.Cancelled is raised at the run's current yield",
    "retry": "retrying: it continues from where it stopped once a worker picks it up",
}


def cmd_operate(args: argparse.Namespace) -> int:
    """``durable pause|resume|cancel|retry RUN_ID``."""
    with _run_app(args) as (app, run_id):
        # The status before the operation says what it did (a race changes only the words).
        before = app.get_run(run_id)
        if args.command == "pause":
            app.pause(run_id)
        elif args.command == "resume":
            app.resume(run_id)
        elif args.command == "cancel":
            app.cancel(run_id, args.reason)
        else:
            app.retry(run_id)
    print(_operated(args.command, before))
    return 0


def _operated(command: str, before: RunInfo) -> str:
    """What ``durable pause|resume|cancel|retry`` did to a run that had ``before``."""
    run, status = before.run_id, before.status
    if command == "pause" and status == RunStatus.PAUSED:
        return f"run {run} is already paused; nothing to do"
    if command == "resume" and status != RunStatus.PAUSED:
        return f"run {run} is not paused (status {status}); nothing to resume"
    if command == "cancel" and before.started_at is None:
        return f"run {run} had not started ({status}): it is cancelled now, nothing ran"
    if command == "cancel" and status == RunStatus.BLOCKED:
        return f"run {run} was blocked: it is cancelled now (no compensation could run)"
    return f"run {run}: {_OPERATIONS[command]}"


def cmd_rerun(args: argparse.Namespace) -> int:
    """``durable rerun RUN_ID``: a new run with the same workflow and arguments."""
    with _run_app(args) as (app, run_id):
        handle = app.rerun(run_id)
    print(handle.run_id)
    return 0


def cmd_fork(args: argparse.Namespace) -> int:
    """``durable fork RUN_ID --at SEQ``: a new run whose log starts as a copy up to SEQ."""
    with _run_app(args) as (app, run_id):
        try:
            handle = app.fork(run_id, args.at)
        except ValueError as exc:
            raise CliError(f"--at {args.at}: {one_line(str(exc))}") from None
    print(handle.run_id)
    return 0


@contextlib.contextmanager
def _run_app(args: argparse.Namespace) -> Iterator[tuple[App, str]]:
    """The App of a command that names a run (``--app`` if it takes one) and the run's
    full id, resolved from the RUN_ID (or unique prefix) given."""
    if getattr(args, "app", None):
        context = load_app(args.app, args)
    else:
        check_embedded(args, read_only=False)  # a new server holds no run to find
        context = bare_app(args)
    with context as app:
        yield app, app.resolve_run_id(args.run_id)


# -- maintenance --------------------------------------------------------------------------


def cmd_prune(args: argparse.Namespace) -> int:
    """``durable prune --older-than 7d``: delete runs that ended before the cutoff."""
    age = parse_duration(args.older_than)
    cutoff = datetime.now(UTC) - age
    check_embedded(args, read_only=False)  # a new server holds no run to prune
    with bare_app(args) as app:
        _ = app.dsn  # connect first, so the progress display shows only pruning
        progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err_console(),
            transient=True,
        )
        with progress:
            task = progress.add_task(f"pruning runs that ended before {format_time(cutoff)}")

            def show(so_far: PruneResult) -> None:
                progress.update(
                    task,
                    description=f"pruned {so_far.runs} runs, {so_far.events} events, "
                    f"{so_far.signals} signals",
                )

            total = app.prune(cutoff, batch=args.batch, progress=show, pause=args.pause)
    if args.json:
        print_json(total.model_dump(mode="json"))
    else:
        print(
            f"pruned {total.runs} runs, {total.events} events and {total.signals} signals "
            f"(runs that ended before {format_time(cutoff)})"
        )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """``durable replay APP``: replay stored logs against the code; exit 1 on a mismatch."""
    with load_app(args.app, args) as app:
        report = app.check_replay(workflow=args.workflow, limit=args.limit)
    console = out_console()
    for m in report.mismatches:
        label = "ERROR" if m.crashed else "MISMATCH"
        console.print(
            Text.assemble(
                (label, "bold red"),
                f" run {m.run_id} ({m.workflow}, {m.status}): ",
                one_line(m.message),
            )
        )
    summary = f"checked {report.checked} runs, {len(report.mismatches)} mismatched"
    if report.skipped:
        names = ", ".join(sorted(report.skipped))
        summary += (
            f", skipped {report.skipped_total} runs of workflows {args.app} does not "
            f"register ({names})"
        )
    console.print(Text(summary, style="bold red" if report.mismatches else "green"))
    return 1 if report.mismatches else 0


def cmd_db(args: argparse.Namespace) -> int:
    """``durable db [status|start|stop|url]``: the embedded PostgreSQL server."""
    action = args.action or "status"
    home = args.home
    if action == "url":
        print(embedded.embedded_url(home))
    elif action == "start":
        status = embedded.embedded_status(home)
        if status["running"]:
            print(embedded.embedded_start(home))
            _note(
                f"the embedded server in {status['home']} was already running "
                f"(pid {status['pid']}); nothing to start",
                dim=False,
            )
            return 0
        first = "" if status["initialized"] else " (this first start initialises it)"
        _note(f"starting the embedded server in {status['home']}{first}...")
        print(embedded.embedded_start(home))
    elif action == "stop":
        stopped = embedded.embedded_stop(home)
        print("stopped" if stopped else "not running")
    else:
        _db_status(args)
    return 0


def _db_status(args: argparse.Namespace) -> None:
    status = embedded.embedded_status(args.home)
    if args.json:
        print_json(status)
        return
    console = out_console()
    running = status["running"]
    console.print(
        Text.assemble(
            ("running  ", "bold"),
            ("yes", "green") if running else ("no", "yellow"),
            f" (pid {status['pid']})" if running else "",
        )
    )
    rows = [
        ("home", status["home"]),
        ("data dir", status["data_dir"] + ("" if status["initialized"] else " (not created yet)")),
        ("url", status["url"]),
        ("log", status["log"]),
        ("version", status["version"] or "not installed: pip install 'pgdurable[embedded]'"),
    ]
    for key, value in rows:
        console.print(Text.assemble((f"{key:<9}", "bold"), str(value)))
    if args.dsn or os.environ.get("DURABLE_DSN"):
        _note("note: a DSN is configured (--dsn or DURABLE_DSN); pgdurable uses that one")


# -- the dashboard ---------------------------------------------------------------------


def cmd_dashboard(args: argparse.Namespace) -> int:
    """``durable dashboard [APP]``: serve the web dashboard until interrupted."""
    import importlib.util

    missing = [m for m in ("starlette", "jinja2", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        sys.stderr.write(
            f"error: the dashboard needs {', '.join(missing)}: pip install 'pgdurable[dashboard]'\n"
        )
        return 2
    from ..dashboard import serve

    token = args.token or os.environ.get("DURABLE_DASHBOARD_TOKEN") or None
    opened = load_app(args.app, args) if args.app else bare_app(args)
    with opened as app:
        _ = app.dsn  # connect and migrate now: a bad DSN fails before the server starts
        where = f"http://{args.host}:{args.port}/"
        extras = [x for x in ("read-only" if args.read_only else "", "token" if token else "") if x]
        _note(f"pgdurable dashboard on {where}" + (f" ({', '.join(extras)})" if extras else ""))
        if args.host not in ("127.0.0.1", "localhost", "::1") and token is None:
            _note(
                f"warning: listening on {args.host} with no token: anyone who reaches it can "
                "act on your runs; give --token",
                dim=False,
            )
        serve(app, host=args.host, port=args.port, read_only=args.read_only, token=token)
    return 0
