"""The argument parser of ``durable``: commands, options and their help."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn, Protocol

from ._commands import (
    cmd_dashboard,
    cmd_db,
    cmd_emit,
    cmd_export,
    cmd_fork,
    cmd_operate,
    cmd_prune,
    cmd_queues,
    cmd_replay,
    cmd_rerun,
    cmd_runs,
    cmd_schedules,
    cmd_show,
    cmd_signal,
    cmd_start,
    cmd_stats,
    cmd_worker,
    cmd_workers,
)
from ._common import STATUSES

__all__ = ["build_parser"]

DESCRIPTION = """\
pgdurable: durable execution for Python generator workflows, on PostgreSQL.

Database: --dsn, else $DURABLE_DSN, else the embedded PostgreSQL server whose
data lives in $DURABLE_HOME (default ./.durable), started on first use; the
commands that only read (runs, show, stats) never create or start it.
RUN_ID is a run id or a unique prefix of one (at least 4 characters).
APP is module:attribute naming a durable.App (e.g. shop:app), imported with the
current directory on the module path."""

EPILOG = """\
exit status: 0 success, 1 a failed check or a run that failed (start --wait,
replay with a mismatch), 2 bad usage (bad argument, unknown or ambiguous run,
unknown workflow, module that does not import, database not reachable).

Run 'durable COMMAND --help' for the options of a command."""

RUN_ID_HELP = "a run id, or a unique prefix of one (at least 4 characters)"

_FORMATTER = argparse.RawDescriptionHelpFormatter


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


# Upper bounds of the numeric options: far above any sensible value, and low enough that
# no value reaches PostgreSQL's integer types or Python's clock and thread limits.
MAX_LIMIT = 10_000  # runs --limit: one page of runs
MAX_OFFSET = 2**31 - 1  # runs --offset
MAX_SEQ = 2**31 - 1  # fork --at (seq is an integer column)
MAX_BATCH = 100_000  # prune --batch: runs deleted per transaction
MAX_PRUNE_PAUSE = 3600.0  # prune --pause: seconds between batches
MAX_REPLAY = 10_000_000  # replay --limit
MAX_CONCURRENCY = 1024  # worker --concurrency: threads
MAX_LEASE_SECONDS = 86_400.0  # worker --lease-seconds: a day
MAX_POLL_SECONDS = 3_600.0  # worker --poll-interval: an hour
MAX_TIMEOUT_SECONDS = 31_536_000.0  # start --timeout: 365 days


def _int_between(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a number of at least {low}, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"expected a number of at most {high}, got {text}")
        return value

    return parse


def _seconds_up_to(high: float, *, zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite, positive (or with ``zero``, not negative) number of
    seconds, at most ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number of seconds, got {text!r}"
            ) from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            kind = "0 or more" if zero else "a finite, positive number of"
            raise argparse.ArgumentTypeError(f"expected {kind} seconds, got {text}")
        if value > high:
            raise argparse.ArgumentTypeError(
                f"expected at most {high:.0f} seconds ({_in_words(high)}), got {text}"
            )
        return value

    return parse


def _in_words(seconds: float) -> str:
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds:g} seconds"


def _add_database_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On the subcommands the defaults are SUPPRESS, so `durable --dsn X runs` and
    # `durable runs --dsn X` both work without one overwriting the other.
    default = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("database")
    group.add_argument(
        "--dsn",
        default=default,
        metavar="DSN",
        help="PostgreSQL connection string (default: $DURABLE_DSN, else the embedded server)",
    )
    group.add_argument(
        "--schema",
        default=default,
        metavar="NAME",
        help="schema that holds pgdurable's tables (default: durable, or the App's own)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``durable`` command line."""
    from .. import __version__

    parser = _Parser(
        prog="durable", description=DESCRIPTION, epilog=EPILOG, formatter_class=_FORMATTER
    )
    parser.add_argument("--version", action="version", version=f"pgdurable {__version__}")
    _add_database_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True

    def command(name: str, summary: str, description: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=summary,
            description=description or summary,
            formatter_class=_FORMATTER,
        )
        _add_database_options(p, top=False)
        return p

    _running_commands(command)
    _inspecting_commands(command)
    _operating_commands(command)
    _maintenance_commands(command)
    return parser


def _running_commands(command: _Factory) -> None:
    p = command(
        "worker",
        "run a worker: claim runs, replay them, execute their steps",
        "Run a worker in this process until SIGINT or SIGTERM. On a signal it claims no\n"
        "new work, lets running steps finish and be recorded, and releases its leases\n"
        "(exit status 0). Start as many workers, on as many machines, as you like.",
    )
    p.add_argument("app", metavar="APP", help="module:attribute naming a durable.App")
    p.add_argument(
        "--concurrency",
        type=_int_between(1, MAX_CONCURRENCY),
        default=16,
        metavar="N",
        help=f"steps executed at once, 1 to {MAX_CONCURRENCY} (default: 16)",
    )
    p.add_argument(
        "--lease-seconds",
        type=_seconds_up_to(MAX_LEASE_SECONDS),
        default=None,
        metavar="S",
        help=f"how long a claim lasts without a heartbeat, at most {MAX_LEASE_SECONDS:g} "
        "(default: 30)",
    )
    p.add_argument(
        "--poll-interval",
        type=_seconds_up_to(MAX_POLL_SECONDS),
        default=None,
        metavar="S",
        help=f"safety-net poll for due work, at most {MAX_POLL_SECONDS:g}; notifications "
        "usually wake it sooner (default: 1)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="logging level (default: info)",
    )
    p.set_defaults(handler=cmd_worker)

    p = command(
        "start",
        "start a run of a workflow and print its run id",
        "Start a run and print its run id. Each ARG_JSON is one positional argument of\n"
        "the workflow, written as JSON: 42, '\"text\"', '{\"id\": 7}'. If a run with\n"
        "the --run-id or --idempotency-key exists, nothing is started: its id is printed\n"
        'and stderr says "existing run".\n\n'
        "This command runs nothing itself: a worker (`durable worker APP`) must be\n"
        "running somewhere for the run to make progress. With --wait it blocks until\n"
        "the run ends and prints the result as JSON (exit status 1 if the run fails, is\n"
        "cancelled or times out, or --timeout passes); the run id goes to stderr, and\n"
        "to stdout first when stdout is a terminal.",
    )
    p.add_argument("app", metavar="APP", help="module:attribute naming a durable.App")
    p.add_argument("workflow", metavar="WORKFLOW", help="the workflow's registered name")
    p.add_argument("args", metavar="ARG_JSON", nargs="*", help="workflow arguments, as JSON")
    p.add_argument("--run-id", metavar="ID", help="the run id (default: a new uuid4)")
    p.add_argument(
        "--idempotency-key",
        metavar="K",
        help="start nothing if a run of this workflow has this key; print its id instead",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait for the run to end and print its result as JSON (needs a running worker)",
    )
    p.add_argument(
        "--timeout",
        type=_seconds_up_to(MAX_TIMEOUT_SECONDS),
        default=None,
        metavar="S",
        help="with --wait: give up after S seconds (exit status 1)",
    )
    p.set_defaults(handler=cmd_start)


def _inspecting_commands(command: _Factory) -> None:
    p = command(
        "runs",
        "list runs, newest first",
        "List runs, newest first, in a table fitted to the terminal. When the full run\n"
        "ids do not fit they are shortened to unique prefixes, which every command\n"
        "accepts as RUN_ID; --json has them in full.",
    )
    p.add_argument("--workflow", metavar="W", help="only runs of this workflow")
    p.add_argument(
        "--status",
        metavar="S",
        choices=STATUSES,
        help=f"only runs with this status: {', '.join(STATUSES)}",
    )
    p.add_argument("--search", metavar="TEXT", help="search run ids, idempotency keys, workflows")
    p.add_argument(
        "--limit",
        type=_int_between(1, MAX_LIMIT),
        default=50,
        metavar="N",
        help=f"at most N runs, up to {MAX_LIMIT} (default: 50)",
    )
    p.add_argument(
        "--offset",
        type=_int_between(0, MAX_OFFSET),
        default=0,
        metavar="N",
        help="skip the first N runs (default: 0)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"runs": [...], "total": N} as JSON and nothing else',
    )
    p.set_defaults(handler=cmd_runs)

    p = command(
        "show",
        "show a run: status, what it waits for, history timeline",
        "Show a run: status, what it waits for (a signal, an event, a timer, a child run,\n"
        "a step's retry), workflow, arguments, result or error, custom status, times,\n"
        "parent and source runs, then its history: one line per event with its seq, the\n"
        "time since the first event, its type and a summary of its data.",
    )
    p.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    p.add_argument(
        "--json", action="store_true", help='print the run as JSON, with its events under "history"'
    )
    p.set_defaults(handler=cmd_show)

    p = command(
        "export",
        "print a run and its whole log as JSON",
        "Print a run and its whole log as JSON (what app.export returns): to keep as a test\n"
        "fixture, to replay against new code, or to attach to a bug report.",
    )
    p.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    p.set_defaults(handler=cmd_export)

    p = command(
        "dashboard",
        "serve the web dashboard",
        "Serve the web dashboard: runs, their timelines and logs, queues, schedules and\n"
        "workers, live, with actions. With APP, its DSN, schema and codec. Needs the\n"
        "dashboard extra: pip install 'pgdurable[dashboard]'.",
    )
    p.add_argument("app", metavar="APP", nargs="?", help="module:attribute naming a durable.App")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--read-only", action="store_true", help="answer every action with 403")
    p.add_argument(
        "--token",
        help="require this token (else $DURABLE_DASHBOARD_TOKEN; default: none)",
    )
    p.set_defaults(handler=cmd_dashboard)

    p = command(
        "stats",
        "count runs by status and by workflow",
        "Count the runs: by status, and by workflow and status.",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"total", "by_status", "by_workflow": {W: {S: N}}} as JSON',
    )
    p.set_defaults(handler=cmd_stats)

    p = command(
        "workers",
        "list the live workers",
        "List the live workers: each heartbeats its row every third of its lease; one that\n"
        "stops heartbeating for longer than its lease is no longer listed.",
    )
    p.add_argument("--json", action="store_true", help="print the workers as a JSON list")
    p.set_defaults(handler=cmd_workers)

    p = command(
        "queues",
        "list the queues, or change a queue's limits",
        "List the queues: their limits, how many runs wait for a slot (pending) and how many\n"
        "hold one (running), and the busiest keys of queues with a key limit.\n\n"
        "`durable queues set NAME --concurrency 5 --rate 100/60` changes limits at run time\n"
        "(running workers follow at their next claim); `none` removes a limit; limits not\n"
        "named are kept.",
    )
    p.add_argument("action", nargs="?", choices=["set"], help="set: change a queue's limits")
    p.add_argument("name", nargs="?", help="the queue (with set)")
    p.add_argument("--concurrency", metavar="N", help="runs of the queue at once, or none")
    p.add_argument(
        "--worker-concurrency", metavar="N", help="runs of the queue per worker, or none"
    )
    p.add_argument("--key-concurrency", metavar="N", help="runs per concurrency key, or none")
    p.add_argument("--rate", metavar="N/SECONDS", help="at most N starts in any SECONDS, or none")
    p.add_argument("--json", action="store_true", help="print the queues as a JSON list")
    p.set_defaults(handler=cmd_queues)

    p = command(
        "schedules",
        "list the schedules, or pause, resume, trigger, backfill or delete one",
        "List the schedules (workers write their declarations when they start) with their\n"
        "next fire times and last run; or act on one:\n\n"
        "  durable schedules pause|resume|trigger|delete NAME\n"
        "  durable schedules backfill NAME --start 2026-11-01T00:00Z --end 2026-11-08T00:00Z\n\n"
        "trigger starts a run now, backfill one run per tick in [start, end) that has none.",
    )
    p.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "pause", "resume", "trigger", "backfill", "delete"],
        help="what to do (default: list)",
    )
    p.add_argument("name", nargs="?", help="the schedule (for every action but list)")
    p.add_argument("--start", metavar="ISO", help="backfill: the first instant (inclusive)")
    p.add_argument("--end", metavar="ISO", help="backfill: the last instant (exclusive)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=cmd_schedules)


def _operating_commands(command: _Factory) -> None:
    p = command(
        "signal",
        "send a signal to a run",
        "Send a durable signal: FIFO per name, buffered until the run waits for it with\n"
        "ctx.wait_signal(NAME), delivered exactly once. PAYLOAD_JSON defaults to null.",
    )
    p.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    p.add_argument("name", metavar="NAME")
    p.add_argument("payload", metavar="PAYLOAD_JSON", nargs="?", help="the payload, as JSON")
    p.set_defaults(handler=cmd_signal)

    p = command(
        "emit",
        "emit a latched event (the first emission of a key wins)",
        "Emit a latched event: every ctx.wait_event(KEY), past or future, in any run,\n"
        "receives the payload of the first emission; later emissions change nothing.",
    )
    p.add_argument("key", metavar="KEY")
    p.add_argument("payload", metavar="PAYLOAD_JSON", nargs="?", help="the payload, as JSON")
    p.set_defaults(handler=cmd_emit)

    for name, summary in (
        ("pause", "pause a run at its next yield"),
        ("resume", "resume a paused run"),
        ("cancel", "cancel a run: durable.Cancelled is raised at its yield"),
        ("retry", "continue a failed or blocked run from where it stopped"),
    ):
        p = command(name, summary)
        p.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
        if name == "cancel":
            p.add_argument("--reason", metavar="TEXT", help="why (recorded in the log)")
        p.set_defaults(handler=cmd_operate)

    app_help = "module:attribute of the App, so the new run gets its workflow's timeout (optional)"
    p = command(
        "rerun",
        "start a new run with the same workflow and arguments",
        "Start a new run of the same workflow with the same arguments; its source run is\n"
        "RUN_ID. Prints the new run id.",
    )
    p.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    p.add_argument("--app", metavar="APP", help=app_help)
    p.set_defaults(handler=cmd_rerun)

    p = command(
        "fork",
        "start a new run from a copy of a run's log up to a seq",
        "Start a new run whose log starts as a copy of RUN_ID's log up to event SEQ (see\n"
        "`durable show RUN_ID`), so the steps recorded there are not executed again.\n"
        "Prints the new run id.",
    )
    p.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    p.add_argument(
        "--at",
        type=_int_between(1, MAX_SEQ),
        required=True,
        metavar="SEQ",
        help="the last event to copy",
    )
    p.add_argument("--app", metavar="APP", help=app_help)
    p.set_defaults(handler=cmd_fork)


def _maintenance_commands(command: _Factory) -> None:
    p = command(
        "prune",
        "delete runs that ended before a cutoff, with their logs",
        "Delete runs that ended (completed, failed, cancelled, timed out) more than\n"
        "--older-than ago, with all their events and signals, in short batches.",
    )
    p.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help="a number and a unit: 30s, 15m, 12h, 7d, 2w",
    )
    p.add_argument(
        "--batch",
        type=_int_between(1, MAX_BATCH),
        default=500,
        metavar="N",
        help=f"runs deleted per transaction, up to {MAX_BATCH} (default: 500)",
    )
    p.add_argument(
        "--pause",
        type=_seconds_up_to(MAX_PRUNE_PAUSE, zero=True),
        default=None,
        metavar="SECONDS",
        help="wait between batches (default: as long as the batch took, leaving most of "
        "the database to the workers; 0: as fast as it can)",
    )
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(handler=cmd_prune)

    p = command(
        "replay",
        "replay stored logs against today's code; exit 1 on mismatch",
        "Replay the logs of stored runs (newest first) against the workflow code of APP\n"
        "as it is now, without executing steps or writing anything. Prints one line per\n"
        "run whose log the code no longer reproduces (a worker would block it) and a\n"
        "summary; exit status 1 if any mismatched. Run it before deploying new code.\n"
        "Runs of workflows APP does not register are skipped.",
    )
    p.add_argument("app", metavar="APP", help="module:attribute naming a durable.App")
    p.add_argument("--workflow", metavar="W", help="only runs of this workflow")
    p.add_argument(
        "--limit",
        type=_int_between(1, MAX_REPLAY),
        default=1000,
        metavar="N",
        help="check at most the N newest runs (default: 1000)",
    )
    p.set_defaults(handler=cmd_replay)

    p = command(
        "db",
        "the embedded PostgreSQL server: status, start, stop, url",
        "Manage the embedded PostgreSQL server whose data lives in $DURABLE_HOME\n"
        "(default ./.durable). It is what pgdurable uses when no DSN is configured.\n\n"
        "  status  whether it runs, its data directory, pid and url (the default)\n"
        "  start   start it unless it runs, and print its url\n"
        "  stop    stop it\n"
        "  url     print its DSN (without starting it)",
    )
    p.add_argument(
        "action",
        metavar="ACTION",
        nargs="?",
        choices=("status", "start", "stop", "url"),
        help="status (default), start, stop or url",
    )
    p.add_argument("--home", metavar="DIR", help="the server's home (default: $DURABLE_HOME)")
    p.add_argument("--json", action="store_true", help="status: print it as JSON")
    p.set_defaults(handler=cmd_db)


class _Factory(Protocol):
    """The type of the ``command`` helper of :func:`build_parser`."""

    def __call__(
        self, name: str, summary: str, description: str = ""
    ) -> argparse.ArgumentParser: ...
