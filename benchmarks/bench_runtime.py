"""pgdurable against the physical limit of its PostgreSQL server, and against DBOS.

    python benchmarks/bench_runtime.py               # full run, about 5 minutes
    python benchmarks/bench_runtime.py --quick       # smoke run, about 30 seconds
    python benchmarks/bench_runtime.py --dsn URL     # an existing server instead
    python benchmarks/bench_runtime.py --skip-dbos   # without DBOS

In one invocation, on one PostgreSQL server (by default a throwaway embedded PostgreSQL 18
started in a temporary directory with pg_stat_statements preloaded; fsync and
synchronous_commit stay on), it measures:

- the limit: pgbench running a one-row INSERT script, 1 client and 16 clients;
- serial: one workflow of 1,000 no-op steps (steps/s, ms per step);
- throughput: 2,000 workflows of 3 no-op steps, all enqueued first, then run by the
  workers at concurrency 16 and 32 (workflows/s and steps/s from the worker's start to
  the last completion, seen by a count query every 20 ms), and the same through a queue
  with concurrency 64 (a limit that never binds: the cost of admission), side by side;
- the same two workloads on DBOS, in a separate database of the same server;
- statements and commits per step of the serial workload (pg_stat_statements calls and
  the xact_commit delta of pg_stat_database, per step, after subtracting a run of the
  same process with a workflow of 0 steps), and pgdurable's most frequent statements.

Every workload runs in a fresh child process on a fresh database, several times; the
table quotes medians. See benchmarks/README.md for the method and the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _peers import DBOS_POLL, INSTALL, dbos_config  # noqa: E402
from _server import (  # noqa: E402
    BenchServer,
    PgbenchResult,
    exit_on_sigterm,
    median,
    server_cpu_seconds,
)

SERIAL_TARGET = 0.60  # serial steps/s as a share of pgbench's 1-client commits/s
THROUGHPUT_TARGET = 10.0  # pgdurable workflows/s over DBOS's
PER_STEP_TARGET = 1.0  # statements and commits per serial step (the design's aim)
PER_STEP_SLACK = 1.05  # allowance for background polls when judging "met"
POLL_INTERVAL = 0.02  # seconds between count queries while waiting for completion
DBOS_QUEUE = "bench"
QUEUED = "pgdurable-queued"  # the throughput workload through a queue
QUEUE_CONCURRENCY = 64  # its limit: above the worker's concurrency, so it never binds
QUEUED_TARGET = 0.85  # queued workflows/s within 15% of unqueued


# -- the workloads, as run in a child process ---------------------------------------------

_step_times: list[float] = []


def _pgdurable_app(dsn: str) -> Any:
    import durable

    app = durable.App(dsn)

    @app.step(name="noop")
    def noop(i: int) -> int:
        _step_times.append(time.perf_counter())
        return i

    @app.workflow(name="bench_serial")
    def bench_serial(ctx: durable.Context, n: int) -> Generator[Any, Any, int]:
        for i in range(n):
            yield noop(i)
        return n

    @app.workflow(name="bench_three")
    def bench_three(ctx: durable.Context) -> Generator[Any, Any, None]:
        yield noop(0)
        yield noop(1)
        yield noop(2)

    return app


def _dbos_workflows() -> tuple[Callable[[int], int], Callable[[], None]]:
    from dbos import DBOS

    @DBOS.step(name="noop")
    def noop(i: int) -> int:
        _step_times.append(time.perf_counter())
        return i

    @DBOS.workflow(name="bench_serial")
    def bench_serial(n: int) -> int:
        for i in range(n):
            noop(i)
        return n

    @DBOS.workflow(name="bench_three")
    def bench_three() -> None:
        noop(0)
        noop(1)
        noop(2)

    return bench_serial, bench_three


def _wait_count(dsn: str, query: str, target: int, timeout: float) -> int:
    """Poll ``query`` (a count) every POLL_INTERVAL until it reaches ``target``; returns
    the number of polls sent."""
    import psycopg

    polls = 0
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute(query).fetchone()
            polls += 1
            if row is not None and int(row[0]) >= target:
                return polls
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {row[0] if row else 0} of {target} completed in time")
            time.sleep(POLL_INTERVAL)


class Clock:
    """Wall time and CPU time (this process; the server's, when it is local) of a phase."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def __enter__(self) -> Clock:
        self.cpu0 = time.process_time()
        self.srv0 = server_cpu_seconds(self.server_pid) if self.server_pid else None
        self.wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.wall0
        self.client_cpu = time.process_time() - self.cpu0
        srv1 = server_cpu_seconds(self.server_pid) if self.server_pid else None
        self.server_cpu = None if srv1 is None or self.srv0 is None else srv1 - self.srv0

    def result(self, **extra: Any) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "client_cpu": self.client_cpu,
            "server_cpu": self.server_cpu,
            **extra,
        }


def _in_run_ms(n: int) -> float | None:
    """Mean time between consecutive step starts of the measured workflow, in ms."""
    times = _step_times[-n:] if n > 1 else []
    return (times[-1] - times[0]) * 1000.0 / (n - 1) if len(times) == n > 1 else None


def child_pgdurable_serial(
    dsn: str, n: int, warmup: int, concurrency: int, server_pid: int
) -> dict[str, Any]:
    app = _pgdurable_app(dsn)
    with app.worker(concurrency=concurrency):
        if warmup:
            app.start("bench_serial", warmup).result(timeout=300)
        with Clock(server_pid) as clock:
            app.start("bench_serial", n).result(timeout=900)
    app.close()
    return clock.result(steps=n, in_run_ms=_in_run_ms(n))


def child_pgdurable_throughput(
    dsn: str, n: int, concurrency: int, server_pid: int, queued: bool = False
) -> dict[str, Any]:
    app = _pgdurable_app(dsn)
    queue = None
    if queued:  # a queue whose limit never binds: what admission itself costs
        queue = app.queue("bench", concurrency=QUEUE_CONCURRENCY).name
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: app.start("bench_three", queue=queue), range(n)))
    enqueue_seconds = time.perf_counter() - started
    query = (
        "SELECT count(*) /* bench-poll */ FROM durable.runs "
        "WHERE status = 'completed' AND workflow = 'bench_three'"
    )
    with Clock(server_pid) as clock:
        worker = app.worker(concurrency=concurrency).start()
        polls = _wait_count(dsn, query, n, timeout=900)
    worker.stop()
    app.close()
    return clock.result(workflows=n, polls=polls, enqueue_seconds=enqueue_seconds)


def child_dbos_serial(dsn: str, n: int, warmup: int, server_pid: int) -> dict[str, Any]:
    from dbos import DBOS

    bench_serial, _ = _dbos_workflows()
    DBOS(config=dbos_config(dsn))
    DBOS.launch()
    try:
        if warmup:
            bench_serial(warmup)
        with Clock(server_pid) as clock:
            bench_serial(n)
    finally:
        DBOS.destroy()
    return clock.result(steps=n, in_run_ms=_in_run_ms(n))


def child_dbos_throughput(
    dsn: str, n: int, concurrency: int, poll: float, server_pid: int
) -> dict[str, Any]:
    from dbos import DBOS

    _, bench_three = _dbos_workflows()
    # Enqueue everything from a DBOS process that listens to no queue of ours...
    DBOS(config=dbos_config(dsn))
    DBOS.listen_queues([])
    DBOS.launch()
    try:
        queue = DBOS.register_queue(
            DBOS_QUEUE, worker_concurrency=concurrency, polling_interval_sec=poll
        )
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: queue.enqueue(bench_three), range(n)))
        enqueue_seconds = time.perf_counter() - started
    finally:
        DBOS.destroy()
    # ... then launch the worker: a DBOS process that dequeues it.
    DBOS(config=dbos_config(dsn))
    query = (
        "SELECT count(*) /* bench-poll */ FROM dbos.workflow_status WHERE status = 'SUCCESS' "
        "AND name = 'bench_three'"
    )
    try:
        with Clock(server_pid) as clock:
            DBOS.launch()
            launch_seconds = time.perf_counter() - clock.wall0
            polls = _wait_count(dsn, query, n, timeout=900)
    finally:
        DBOS.destroy()
    return clock.result(
        workflows=n,
        polls=polls,
        enqueue_seconds=enqueue_seconds,
        launch_seconds=launch_seconds,
    )


def run_as_child(args: argparse.Namespace) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    dsn, pid = args.child_dsn, args.server_pid
    if args.child == "pgdurable-serial":
        out = child_pgdurable_serial(dsn, args.n, args.warmup, args.concurrency, pid)
    elif args.child == "pgdurable-throughput":
        out = child_pgdurable_throughput(dsn, args.n, args.concurrency, pid)
    elif args.child == "pgdurable-queued-throughput":
        out = child_pgdurable_throughput(dsn, args.n, args.concurrency, pid, queued=True)
    elif args.child == "dbos-serial":
        out = child_dbos_serial(dsn, args.n, args.warmup, pid)
    elif args.child == "dbos-throughput":
        out = child_dbos_throughput(dsn, args.n, args.concurrency, args.dbos_poll, pid)
    else:  # pragma: no cover - argparse restricts the choices
        raise SystemExit(f"unknown child {args.child}")
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    sys.stdout.flush()


# -- the parent: runs children and counts what reached the server -----------------------


@dataclass
class Measured:
    """One child run and what the server counted for its database."""

    result: dict[str, Any]
    commits: int
    xids: int
    statements: list[tuple[str, int, float]] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(c for _, c, _ in self.statements)


class Runner:
    def __init__(self, server: BenchServer, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.counter = 0

    def child(self, mode: str, *, n: int, concurrency: int = 16, warmup: int = 0) -> Measured:
        server = self.server
        self.counter += 1
        dbname = f"bench_{mode.replace('-', '_')}_{self.counter}"
        dsn = server.create_database(dbname)
        server.wait_idle(dbname)
        before = server.xact_commit(dbname)
        xid_before = server.next_xid()
        server.reset_statements()
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            mode,
            "--child-dsn",
            dsn,
            "--n",
            str(n),
            "--concurrency",
            str(concurrency),
            "--warmup",
            str(warmup),
            "--dbos-poll",
            str(self.args.dbos_poll),
            "--server-pid",
            str(server.postmaster_pid or 0),
        ]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        env.pop("DURABLE_DSN", None)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
            raise SystemExit(f"child {mode} failed (exit {proc.returncode}):\n{tail}")
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise SystemExit(f"child {mode} printed no result:\n{proc.stdout}\n{proc.stderr}")
        result = json.loads(lines[-1])
        server.wait_idle(dbname)
        commits = server.xact_commit(dbname) - before
        xids = server.next_xid() - xid_before
        statements = server.statements(dbname)
        polls = int(result.get("polls", 0))
        if polls:  # the benchmark's own count queries are not the system's work
            commits -= polls
            statements = [s for s in statements if "bench-poll" not in s[0]]
        server.drop_database(dbname)
        self.progress(mode, n, concurrency, result)
        return Measured(result, commits, xids, statements)

    def progress(self, mode: str, n: int, concurrency: int, result: dict[str, Any]) -> None:
        seconds = float(result["seconds"])
        if "steps" in result:
            rate = f"{n / seconds:,.0f} steps/s" if n else "baseline"
        else:
            rate = f"{n / seconds:,.0f} workflows/s (concurrency {concurrency})"
        print(f"  {mode:<22} n={n:<6} {seconds:8.3f} s  {rate}", file=sys.stderr, flush=True)


@dataclass
class Row:
    workload: str
    system: str
    value: float
    unit: str
    vs_limit: float | None = None
    vs_dbos: float | None = None
    target: str = ""
    met: bool | None = None
    fmt: str = ",.0f"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _cpu(result: dict[str, Any], units: int, unit: str) -> str:
    """CPU per unit of work while it ran: this client's, and the server's when local."""
    if not units:
        return "CPU n/a"
    seconds = float(result["seconds"])
    client = float(result["client_cpu"])
    text = f"CPU ms/{unit}: client {client * 1000 / units:.3f}"
    server = result.get("server_cpu")
    if server is not None:
        busy = (client + server) / seconds / (os.cpu_count() or 1)
        text += f", server {server * 1000 / units:.3f} (both: {busy:.0%} of all CPUs)"
    return text


def render(rows: list[Row]) -> str:
    header = ["workload", "system", "value", "unit", "vs limit", "vs DBOS", "target", "met?"]
    body = []
    for r in rows:
        body.append(
            [
                r.workload,
                r.system,
                format(r.value, r.fmt),
                r.unit,
                "" if r.vs_limit is None else f"{r.vs_limit:.0%}",
                "" if r.vs_dbos is None else f"{r.vs_dbos:.1f}x",
                r.target,
                "" if r.met is None else ("yes" if r.met else "NO"),
            ]
        )
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    numeric = {2, 4, 5}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    return "\n".join(out)


@dataclass
class Results:
    """Everything one invocation measured."""

    server_version: str
    has_pgss: bool
    reps: int
    steps: int
    workflows: int
    concurrencies: list[int]
    systems: list[str]
    label: dict[str, str]
    limit: dict[int, PgbenchResult] = field(default_factory=dict)
    serial: dict[str, list[Measured]] = field(default_factory=dict)
    baseline: dict[str, Measured] = field(default_factory=dict)
    tput: dict[tuple[str, int], list[Measured]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)


def measure(args: argparse.Namespace, results: Results, warmup: int, pg_seconds: float) -> None:
    """Run every workload on one server (started here unless ``--dsn``)."""
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    with BenchServer(dsn=args.dsn) as server:
        where = "an embedded server started for this run" if args.dsn is None else "--dsn"
        results.server_version = server.version
        results.has_pgss = server.has_pgss
        print(
            f"PostgreSQL {server.version} ({where}); {os.cpu_count()} CPUs; reps={results.reps}, "
            f"serial steps={results.steps}, workflows={results.workflows}",
            file=sys.stderr,
            flush=True,
        )
        if not server.has_pgss:
            results.notes.append(f"statements per step not measured: {server.pgss_reason}")
        server.create_database("bench_limit")
        for clients in (1, 16):
            r = server.pgbench_insert("bench_limit", clients, pg_seconds)
            results.limit[clients] = r
            print(
                f"  pgbench INSERT, {clients:>2} clients  {r.tps:10,.0f} commits/s "
                f"{r.latency_ms:.3f} ms",
                file=sys.stderr,
                flush=True,
            )
        server.drop_database("bench_limit")
        runner = Runner(server, args)
        for system in results.systems:
            mode = f"{system}-serial"
            results.baseline[system] = runner.child(mode, n=0, warmup=warmup)
            results.serial[system] = [
                runner.child(mode, n=results.steps, warmup=warmup) for _ in range(results.reps)
            ]
        for concurrency in results.concurrencies:
            # the queued variant side by side with the unqueued one, repetition by repetition
            systems = [*results.systems, QUEUED]
            for _ in range(results.reps):
                for system in systems:
                    results.tput.setdefault((system, concurrency), []).append(
                        runner.child(
                            f"{system}-throughput", n=results.workflows, concurrency=concurrency
                        )
                    )
    results.elapsed = time.monotonic() - started
    results.load = (load_start, os.getloadavg()[0])


def build_rows(res: Results) -> list[Row]:
    """The summary table: medians, ratios, targets."""
    one, sixteen = res.limit[1], res.limit[16]
    steps, workflows, systems, label = res.steps, res.workflows, res.systems, res.label
    rows: list[Row] = [
        Row("limit: 1-row INSERT", "pgbench, 1 client", one.tps, "commits/s"),
        Row("", "", one.latency_ms, "ms/commit", fmt=".3f"),
        Row("limit: 1-row INSERT", "pgbench, 16 clients", sixteen.tps, "commits/s"),
        Row("", "", sixteen.latency_ms, "ms/commit", fmt=".3f"),
    ]
    end_to_end = {s: median([steps / m.result["seconds"] for m in res.serial[s]]) for s in systems}
    in_run = {
        s: median(
            [1000.0 / m.result["in_run_ms"] for m in res.serial[s] if m.result.get("in_run_ms")]
        )
        for s in systems
    }
    for title, rate_of in (("start to result", end_to_end), ("between step starts", in_run)):
        for system in systems:
            rate = rate_of[system]
            is_pgd = system == "pgdurable"
            share = rate / one.tps
            rows.append(
                Row(
                    f"serial: {steps:,} steps, {title}",
                    label[system],
                    rate,
                    "steps/s",
                    share,
                    _ratio(rate, rate_of.get("dbos")) if is_pgd else None,
                    f">= {SERIAL_TARGET:.0%} of limit" if is_pgd else "",
                    share >= SERIAL_TARGET if is_pgd else None,
                )
            )
            rows.append(Row("", "", 1000.0 / rate, "ms/step", fmt=".3f"))
    tput_rate = {
        key: median([workflows / m.result["seconds"] for m in runs])
        for key, runs in res.tput.items()
    }
    for concurrency in res.concurrencies:
        for system in systems:
            rate = tput_rate[(system, concurrency)]
            is_pgd = system == "pgdurable"
            vs_dbos = _ratio(rate, tput_rate.get(("dbos", concurrency))) if is_pgd else None
            rows.append(
                Row(
                    f"throughput: {workflows:,} x 3 steps, c={concurrency}",
                    label[system],
                    rate,
                    "workflows/s",
                    None,
                    vs_dbos,
                    f">= {THROUGHPUT_TARGET:.0f}x DBOS" if vs_dbos is not None else "",
                    vs_dbos >= THROUGHPUT_TARGET if vs_dbos is not None else None,
                )
            )
            rows.append(Row("", "", rate * 3, "steps/s", _ratio(rate * 3, sixteen.tps)))
        queued = tput_rate.get((QUEUED, concurrency))
        if queued is not None:
            vs_plain = _ratio(queued, tput_rate[("pgdurable", concurrency)])
            rows.append(
                Row(
                    f"throughput: {workflows:,} x 3 steps, c={concurrency}",
                    f"pgdurable, queue c={QUEUE_CONCURRENCY}",
                    queued,
                    "workflows/s",
                    None,
                    None,
                    f">= {QUEUED_TARGET:.0%} of unqueued ({vs_plain:.2f}x)" if vs_plain else "",
                    vs_plain >= QUEUED_TARGET if vs_plain is not None else None,
                )
            )
    per_step: dict[str, dict[str, float]] = {}
    for system in systems:
        base = res.baseline[system]
        runs = res.serial[system]
        per_step[system] = {
            "statements/step": median([(m.calls - base.calls) / steps for m in runs]),
            "commits/step": median([(m.commits - base.commits) / steps for m in runs]),
            "writing": median([(m.xids - base.xids) / steps for m in runs]),
        }
    for system in systems:
        is_pgd = system == "pgdurable"
        other = per_step.get("dbos") if is_pgd else None
        for unit, title in (
            ("statements/step", "serial: statements per step"),
            ("commits/step", "serial: commits per step"),
        ):
            if unit == "statements/step" and not res.has_pgss:
                continue
            value = per_step[system][unit]
            rows.append(
                Row(
                    title,
                    label[system],
                    value,
                    unit,
                    vs_dbos=_ratio(value, other[unit]) if other else None,
                    target=f"{PER_STEP_TARGET:g}" if is_pgd else "",
                    met=value <= PER_STEP_TARGET * PER_STEP_SLACK if is_pgd else None,
                    fmt=".2f",
                )
            )
        rows.append(Row("", "", per_step[system]["writing"], "of them writing", fmt=".2f"))
    return rows


def print_details(res: Results) -> None:
    """Every repetition, CPU per unit of work, and pgdurable's statements."""
    steps, workflows, label = res.steps, res.workflows, res.label
    print("Every run:")
    for clients, r in res.limit.items():
        if r.server_cpu is not None and r.client_cpu is not None:
            print(
                f"  pgbench {clients:>2} client(s): CPU ms/commit: client "
                f"{r.client_cpu * 1000 / r.transactions:.3f}, server "
                f"{r.server_cpu * 1000 / r.transactions:.3f}"
            )
    for system in res.systems:
        runs = res.serial[system]
        rates = ", ".join(f"{steps / m.result['seconds']:,.0f}" for m in runs)
        gaps = ", ".join(f"{m.result['in_run_ms']:.3f}" for m in runs if m.result.get("in_run_ms"))
        print(f"  serial {label[system]}: steps/s {rates}; ms between step starts {gaps}")
        base = res.baseline[system]
        for m in runs:
            stmts = f"statements {m.calls:,} (0-step run {base.calls:,}), " if res.has_pgss else ""
            print(
                f"    {stmts}commits {m.commits:,} (0-step run {base.commits:,}), "
                f"writing {m.xids:,} (0-step run {base.xids:,}); {_cpu(m.result, steps, 'step')}"
            )
    label = {**label, QUEUED: f"pgdurable, queue c={QUEUE_CONCURRENCY}"}
    for (system, concurrency), runs in res.tput.items():
        rates = ", ".join(f"{workflows / m.result['seconds']:,.0f}" for m in runs)
        extra = ""
        if system == "dbos":
            launch = median([m.result["launch_seconds"] for m in runs])
            extra = f" (launch {launch:.2f} s included)"
        print(f"  throughput {label[system]} c={concurrency}: workflows/s {rates}{extra}")
        for m in runs:
            stmts = f"{m.calls / workflows:.2f} statements, " if res.has_pgss else ""
            print(
                f"    per workflow, with its start: {stmts}"
                f"{m.commits / workflows:.2f} commits ({m.xids / workflows:.2f} writing); "
                f"{_cpu(m.result, workflows, 'workflow')}"
            )
    if not res.has_pgss or not res.serial.get("pgdurable"):
        return
    runs = res.serial["pgdurable"]
    one = runs[len(runs) // 2]
    base_calls = {q: c for q, c, _ in res.baseline["pgdurable"].statements}
    marginal = sorted(
        ((calls - base_calls.get(q, 0), exec_ms, q) for q, calls, exec_ms in one.statements),
        reverse=True,
    )
    print()
    print(f"pgdurable's statements in one serial run ({steps:,} steps), minus the 0-step run:")
    print(f"  {'calls/step':>10}  {'exec ms/call':>12}  query")
    for calls, exec_ms, query in marginal[:5]:
        per_call = exec_ms / calls if calls > 0 else 0.0
        print(f"  {calls / steps:10.3f}  {per_call:12.3f}  {' '.join(query.split())[:100]}")
    key = ("pgdurable", res.concurrencies[0])
    if key not in res.tput:
        return
    runs = res.tput[key]
    one = runs[len(runs) // 2]
    total = sum(t for _, _, t in one.statements) or 1.0
    print()
    print(
        f"pgdurable's statements in one throughput run (c={key[1]}), by execution time "
        "(enqueueing included):"
    )
    print(f"  {'calls/wf':>8}  {'exec ms/wf':>10}  {'share':>5}  query")
    for query, calls, exec_ms in sorted(one.statements, key=lambda s: -s[2])[:5]:
        print(
            f"  {calls / workflows:8.3f}  {exec_ms / workflows:10.3f}  {exec_ms / total:5.0%}  "
            f"{' '.join(query.split())[:90]}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="an existing PostgreSQL server (default: start one)")
    parser.add_argument("--quick", action="store_true", help="a smaller smoke run (~30 s)")
    parser.add_argument("--skip-dbos", action="store_true", help="do not run DBOS")
    parser.add_argument("--reps", type=int, help="repetitions per workload (default 3, quick 1)")
    parser.add_argument("--steps", type=int, help="steps of the serial workflow (default 1000)")
    parser.add_argument("--workflows", type=int, help="workflows of the throughput run (2000)")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[16, 32], help="worker concurrencies"
    )
    parser.add_argument(
        "--pgbench-seconds", type=float, help="duration of each pgbench run (default 10)"
    )
    parser.add_argument(
        "--dbos-poll",
        type=float,
        default=DBOS_POLL,
        help=f"polling_interval_sec of DBOS's queue (default {DBOS_POLL})",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-dsn", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.concurrency = args.concurrency[0]
        run_as_child(args)
        return 0

    quick = args.quick
    run_dbos = not args.skip_dbos
    notes: list[str] = []
    dbos_label = "DBOS"
    if run_dbos:
        try:
            from importlib.metadata import version

            import dbos  # noqa: F401

            dbos_label = f"DBOS {version('dbos')}"
        except ImportError:
            run_dbos = False
            notes.append(f"DBOS is not installed: skipped (install it with: {INSTALL})")
    else:
        notes.append(f"DBOS skipped (--skip-dbos); to compare, install it with: {INSTALL}")
    res = Results(
        server_version="",
        has_pgss=False,
        reps=args.reps or (1 if quick else 3),
        steps=args.steps or (200 if quick else 1000),
        workflows=args.workflows or (300 if quick else 2000),
        concurrencies=list(args.concurrency),
        systems=["pgdurable", *(["dbos"] if run_dbos else [])],
        label={"pgdurable": "pgdurable", "dbos": dbos_label},
        notes=notes,
    )
    measure(args, res, warmup=20, pg_seconds=args.pgbench_seconds or (2.0 if quick else 10.0))
    rows = build_rows(res)

    print()
    print(render(rows))
    print()
    print(
        f"Medians of {res.reps} run(s). Serial 'start to result': from start() to result() "
        "returning; 'between step starts': from the first step's start to the last one's. "
        "vs limit: serial against pgbench 1 client, steps/s of the throughput runs against "
        "pgbench 16 clients. vs DBOS: pgdurable's value over DBOS's. Per step: statements "
        "(pg_stat_statements) and commits (pg_stat_database xact_commit; 'writing': "
        "transaction ids assigned) of the serial run minus those of the same process running "
        "a 0-step workflow, divided by the steps."
    )
    print()
    print_details(res)
    for note in res.notes:
        print(f"\nNote: {note}")
    print(
        f"\n(finished in {res.elapsed:.0f} s; 1-minute load average {res.load[0]:.1f} at the "
        f"start, {res.load[1]:.1f} at the end, on {os.cpu_count()} CPUs)"
    )
    if args.json:
        raw = {
            "server": res.server_version,
            "reps": res.reps,
            "pgbench": {c: vars(r) for c, r in res.limit.items()},
            "serial": {s: [vars(m) for m in runs] for s, runs in res.serial.items()},
            "baseline": {s: vars(m) for s, m in res.baseline.items()},
            "throughput": {
                f"{system}@{c}": [vars(m) for m in runs] for (system, c), runs in res.tput.items()
            },
            "rows": [vars(r) for r in rows],
        }
        args.json.write_text(json.dumps(raw, indent=2, default=str))
    return 0


if __name__ == "__main__":
    exit_on_sigterm()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
