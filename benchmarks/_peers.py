"""The systems the runtime benchmarks compare pgdurable with, and how they are set up.

- DBOS (``dbos``): configured with an application name, its system database (a database
  of the benchmark server) and log level WARNING, everything else at its defaults; its
  queues poll every ``DBOS_POLL`` seconds instead of the default 1.0 (see README.md).
- Absurd (``absurd-sdk``, schema installed by ``absurdctl init`` through psql): one queue,
  ``ABSURD_QUEUE``, created with ``absurdctl create-queue``; the SDK at its defaults.

Both are optional: install them with ``INSTALL``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from _server import pg_binary, sqlalchemy_url

__all__ = [
    "ABSURD_QUEUE",
    "DBOS_APP",
    "DBOS_POLL",
    "INSTALL",
    "absurd_init",
    "absurd_url",
    "absurdctl_path",
    "dbos_config",
    "installed",
]

INSTALL = "pip install -e '.[bench]'"
DBOS_APP = "pgdurable-bench"
DBOS_POLL = 0.01  # polling_interval_sec of DBOS's queues (its default, 1.0, caps it near 15/s)
ABSURD_QUEUE = "default"  # the SDK's default queue


def installed(distribution: str, module: str) -> str | None:
    """The installed version of ``distribution`` if ``module`` can be imported, else None."""
    if find_spec(module) is None:
        return None
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


def dbos_config(dsn: str) -> Any:
    """The ``DBOSConfig`` of the benchmarks: ``dsn``'s database as the system database."""
    return {
        "name": DBOS_APP,
        "system_database_url": sqlalchemy_url(dsn),
        "log_level": "WARNING",
    }


def absurd_url(dsn: str) -> str:
    """A ``postgresql://`` URI for any libpq DSN (what absurdctl hands to psql)."""
    return sqlalchemy_url(dsn)


def absurdctl_path() -> str | None:
    """The ``absurdctl`` script: next to this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "absurdctl"
    return str(beside) if beside.is_file() else shutil.which("absurdctl")


def absurd_init(dsn: str, queue: str = ABSURD_QUEUE) -> None:
    """Install Absurd's schema into ``dsn``'s (empty) database and create ``queue``, with
    ``absurdctl init`` and ``absurdctl create-queue``. absurdctl runs ``psql`` from PATH;
    the embedded server's own psql goes first when there is one."""
    exe = absurdctl_path()
    if exe is None:
        raise SystemExit(f"absurdctl not found: {INSTALL}")
    psql = pg_binary("psql")
    if psql is None:
        raise SystemExit("absurdctl needs psql: install PostgreSQL's client or pgdurable[embedded]")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "ABSURD_"))}
    env["PATH"] = os.pathsep.join([str(Path(psql).parent), env.get("PATH", "")])
    url = absurd_url(dsn)
    for command in (["init"], ["create-queue", queue]):
        done = subprocess.run(
            [exe, command[0], "-d", url, *command[1:]],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(
                f"absurdctl {command[0]} failed: {done.stderr.strip() or done.stdout.strip()}"
            )
