"""What every command shares: errors, consoles, loading the App, parsing arguments."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import sys
import traceback
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from .. import App, ConfigError, RunStatus, embedded
from ..store import validate_dsn

__all__ = [
    "STATUSES",
    "CliError",
    "bare_app",
    "check_embedded",
    "database_label",
    "err_console",
    "load_app",
    "mask_dsn",
    "note_database",
    "one_line",
    "out_console",
    "parse_duration",
    "parse_json",
    "print_json",
]

STATUSES = tuple(str(s) for s in RunStatus)
"""Every status a run can have."""

_JSON_HINT = "quote strings like '\"text\"'"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_AGE_DAYS = 36500
"""The largest ``--older-than`` accepted, in days (100 years)."""


class CliError(Exception):
    """A mistake the user can fix: printed as one line on stderr, exit status ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def one_line(text: str) -> str:
    """``text`` squeezed onto one line (error messages must not spill)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = 200  # piped output: do not squeeze run ids into 80 columns
    return Console(file=stream, width=width, highlight=False, soft_wrap=True)


def out_console() -> Console:
    """A rich console on stdout (the streams are looked up now, so tests can swap them)."""
    return _console(stderr=False)


def err_console() -> Console:
    """A rich console on stderr, for progress displays and notes."""
    return _console(stderr=True)


def print_json(value: Any) -> None:
    """Write ``value`` as JSON on stdout, and nothing else."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def parse_json(text: str, what: str) -> Any:
    """``json.loads(text)``, or a :class:`CliError` naming ``what`` and how to fix it."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"{what} is not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno}); "
            f"{_JSON_HINT}"
        ) from None


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``12h``, ``7d`` or ``2w`` as a timedelta."""
    match = _DURATION.match(text)
    if match is None:
        raise CliError(
            f"--older-than must be a number followed by a unit (s, m, h, d or w), "
            f"like 7d or 12h; got {text!r}"
        )
    amount, unit = float(match.group(1)), match.group(2)
    seconds = amount * _UNIT_SECONDS[unit]
    if seconds > MAX_AGE_DAYS * 86400:
        raise CliError(
            f"--older-than must be at most {MAX_AGE_DAYS}d (100 years); got {text.strip()!r}"
        )
    return timedelta(seconds=seconds)


# -- the App ------------------------------------------------------------------------------


def _dsn_and_schema(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """``--dsn`` (checked now, before connecting) and ``--schema``, as given."""
    dsn = args.dsn or os.environ.get("DURABLE_DSN") or None
    if dsn:
        where = "--dsn" if args.dsn else "DURABLE_DSN"
        try:
            validate_dsn(dsn)
        except ConfigError as exc:
            raise CliError(f"{where} is {one_line(str(exc))}") from None
    return args.dsn or None, args.schema or None


def _configured_dsn(args: argparse.Namespace) -> str | None:
    return getattr(args, "dsn", None) or os.environ.get("DURABLE_DSN") or None


def check_embedded(args: argparse.Namespace, *, read_only: bool) -> None:
    """With no DSN configured, refuse to create the embedded server of $DURABLE_HOME (a
    command naming a run cannot find it in a new server) and, for a ``read_only``
    command, to start it: say which server that is and how to point at another."""
    if _configured_dsn(args):
        return
    status = embedded.embedded_status()
    if status["running"] or (status["initialized"] and not read_only):
        return
    home = status["home"]
    if status["initialized"]:
        raise CliError(
            f"no DSN is configured and the embedded server in {home} is not running: "
            "start it with `durable db start`, or point at your database with --dsn or "
            "DURABLE_DSN (or at another server's home with DURABLE_HOME)"
        )
    create = (
        "`durable db start` creates one there"
        if status["version"]
        else "to create one, install it: pip install 'pgdurable[embedded]'"
    )
    raise CliError(
        f"no DSN is configured and there is no embedded server in {home}: point at your "
        "database with --dsn or DURABLE_DSN, or at its home with DURABLE_HOME (or run "
        f"durable from the directory that holds .durable); {create}"
    )


def database_label(args: argparse.Namespace, schema: str) -> str:
    """The database a command looks at, for humans: ``embedded server in /x/.durable``
    or the DSN with its password masked, and the schema unless it is the default."""
    dsn = _configured_dsn(args)
    text = mask_dsn(dsn) if dsn else f"embedded server in {embedded.durable_home()}"
    return text if schema == "durable" else f"{text}, schema {schema}"


_URL_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*:)[^/?#]*@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&#]*", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.I)


def mask_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URL or key=value form)."""
    if "://" in dsn:
        masked = _URL_PASSWORD.sub(r"\g<head>***@", dsn)
        return _QUERY_PASSWORD.sub(r"\g<head>***", masked)
    return _KV_PASSWORD.sub(r"\g<head>***", dsn)


def note_database(args: argparse.Namespace, schema: str) -> None:
    """A dim line on stderr naming the database looked at, for a human: when stdout and
    stderr are terminals (not under ``| less``, in a script or a log)."""
    if sys.stderr.isatty() and sys.stdout.isatty():
        err_console().print(Text(f"database: {database_label(args, schema)}", style="dim"))


@contextlib.contextmanager
def bare_app(args: argparse.Namespace, *, read_only: bool = False) -> Iterator[App]:
    """An App with no workflows registered, for commands that only talk to the database.
    A ``read_only`` one never creates or starts the embedded server."""
    if read_only:
        check_embedded(args, read_only=True)
    dsn, schema = _dsn_and_schema(args)
    app = App(dsn, schema=schema or os.environ.get("DURABLE_SCHEMA") or "durable")
    try:
        yield app
    finally:
        app.close()


@contextlib.contextmanager
def load_app(spec: str, args: argparse.Namespace) -> Iterator[App]:
    """Import ``module:attribute`` (``module`` alone means ``module:app``) and return the
    :class:`durable.App` it names, with ``--dsn`` / ``--schema`` applied."""
    dsn, schema = _dsn_and_schema(args)
    imported = _import_app(spec)
    app = imported.replace(dsn=dsn, schema=schema) if dsn or schema else imported
    try:
        yield app
    finally:
        app.close()


def _import_app(spec: str) -> App:
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "app"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise CliError(f"APP must look like module:attribute (e.g. shop:app), not {spec!r}")
    if module_name.endswith(".py"):
        raise CliError(
            f"APP names a module, not a file: use {module_name[:-3]}:{attribute} "
            f"rather than {spec!r}"
        )
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (
            module_name == exc.name or module_name.startswith(exc.name + ".")
        ):
            raise CliError(
                f"cannot import module {module_name!r} ({exc}); run durable from the "
                "directory that contains it, or add that directory to PYTHONPATH"
            ) from None
        raise CliError(_import_failure(module_name, exc)) from None
    except Exception as exc:  # the user's module raised while importing
        raise CliError(_import_failure(module_name, exc)) from None
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CliError(
                f"module {module_name!r} has no attribute {attribute!r}; "
                "APP is module:attribute naming a durable.App"
            ) from None
    if not isinstance(value, App):
        raise CliError(
            f"{module_name}:{attribute} is a {type(value).__name__}, not a durable.App; "
            "point APP at the App object (e.g. shop:app)"
        )
    return value


def _import_failure(module_name: str, exc: BaseException) -> str:
    """One line: what the module raised and where."""
    where = ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    if frames and not isinstance(exc, SyntaxError):  # a SyntaxError names its line itself
        last = frames[-1]
        where = f" at {Path(last.filename).name}:{last.lineno}"
    return (
        f"importing {module_name!r} failed: {type(exc).__name__}: {one_line(str(exc))}{where}; "
        "fix the module and try again"
    )
