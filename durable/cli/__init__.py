"""The ``durable`` command line: run workers, start and inspect runs, operate on them.

``main(argv)`` returns the exit status: 0 on success, 1 on a failed check or a run that
failed, 2 on bad usage. Mistakes the user can fix are reported as one line on stderr,
never as a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .. import (
    AmbiguousRunId,
    ConfigError,
    DatabaseUnavailable,
    DurableError,
    InvalidArgument,
    RunCancelled,
    RunFailed,
    RunNotActive,
    RunNotFound,
    RunStateError,
    RunTimedOut,
    SerializationError,
    WorkflowNotFound,
)
from ._common import CliError, one_line

__all__ = ["main"]

# Errors that mean "the request was wrong": exit status 2.
_USAGE_ERRORS = (
    AmbiguousRunId,
    ConfigError,
    DatabaseUnavailable,
    InvalidArgument,
    RunNotActive,
    RunNotFound,
    RunStateError,
    SerializationError,
    WorkflowNotFound,
)
# A run the user waited for did not succeed: exit status 1.
_RUN_ENDINGS = (RunFailed, RunCancelled, RunTimedOut)


def _fail(message: str) -> None:
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()


def _hint(exc: DurableError) -> str:
    """The exception's message, plus what to do where the message does not say it."""
    text = str(exc)
    if isinstance(exc, RunNotFound):
        if len(exc.run_id) < 4:
            text += " (a prefix of a run id needs at least 4 characters)"
        text += "; list runs with `durable runs`"
    elif isinstance(exc, AmbiguousRunId):
        text += "; give more characters of the run id"
    elif isinstance(exc, RunNotActive):
        text += "; it has ended (see `durable show`); `durable rerun` starts it again"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``durable`` command line with ``argv`` (default: ``sys.argv[1:]``) and
    return its exit status."""
    from ._parser import build_parser

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already reported
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return int(args.handler(args))
    except CliError as exc:
        _fail(exc.message)
        return exc.code
    except _RUN_ENDINGS as exc:
        _fail(str(exc))
        return 1
    except _USAGE_ERRORS as exc:
        _fail(_hint(exc))
        return 2
    except DurableError as exc:  # the database refused or failed an operation
        _fail(str(exc))
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:  # `durable runs | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
