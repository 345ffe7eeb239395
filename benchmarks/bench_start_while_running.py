"""The shape users run: runs started while workers run, in one process and in two, for
pgdurable, DBOS and Absurd.

    python benchmarks/bench_start_while_running.py [--runs 1000] [--reps 3] [--dsn DSN]
                                                   [--skip-dbos] [--skip-absurd]

Each scene runs N workflows of three no-op steps (each returns its integer argument) on a
fresh database of one server (by default a throwaway embedded PostgreSQL 18; fsync and
synchronous_commit on), with a worker at concurrency 16 in this process, and takes the
time until a count query (every 20 ms, on its own connection) sees N completed:

- drain: all N started first, then the worker starts; from the worker's start (for DBOS:
  ``DBOS.launch()``) to the N-th completion: the favourable shape, the reference;
- loop, same process: with the worker up and idle for 0.5 s, a thread of the same process
  starts N workflows one by one with the system's normal call; from the first start;
- start_many, same process (pgdurable only): the same, in batches of 100 with
  ``app.start_many``;
- loop, other process: a separate Python process (this script, started before the timing)
  starts the N workflows one by one while the worker runs here; from its first start
  (``time.monotonic`` is the machine's monotonic clock, the same in both processes).

The systems, each in its own database per scene (dropped afterwards), the scenes
interleaved by repetition so a noisy moment hits all of them alike:

- pgdurable: ``app.worker(concurrency=16)``; starts with ``app.start`` (the drain: one
  ``app.start_many``); completed: ``durable.runs.status = 'completed'``.
- DBOS: a queue registered with ``DBOS.register_queue(worker_concurrency=16,
  polling_interval_sec=0.01)``, the one setting changed from its defaults: at the default
  of 1.0 s the queue admits about 15 workflows/s (see README.md); starts with
  ``queue.enqueue`` (``DBOS.start_workflow`` would run the workflow at once in the calling
  process, not in the worker, and without the concurrency limit). The queue is created,
  and the drain's workflows enqueued, by a DBOS instance that listens to no queue
  (``DBOS.listen_queues([])``); the worker is a new ``DBOS(...)`` + ``DBOS.launch()``, and
  so is the other process's client, with ``listen_queues([])``. Completed:
  ``dbos.workflow_status.status = 'SUCCESS'``.
- Absurd: schema from ``absurdctl init`` and the SDK's default queue from ``absurdctl
  create-queue default``; the synchronous SDK at its defaults (``Absurd(url)``, one
  connection per client, shared by the worker's threads; ``start_worker(concurrency=16)``
  in a thread, which polls every 0.25 s, claim batch = concurrency); starts with
  ``app.spawn`` on the same client as the worker (the other process: its own client);
  steps are ``ctx.step("noop", ...)``. Completed: ``absurd.t_default.state = 'completed'``.

Prints workflows/s per system and scene (median of ``--reps``), its ratio to the
system's drain, the median latency of the start call seen by the starting thread, and
pgdurable's workflows/s over each peer's in the same scene. A peer that is not installed
is left out with a note (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import psycopg  # noqa: E402
from _peers import (  # noqa: E402
    ABSURD_QUEUE,
    DBOS_POLL,
    INSTALL,
    absurd_init,
    absurd_url,
    absurdctl_path,
    dbos_config,
    installed,
)
from _server import (  # noqa: E402
    BenchServer,
    exit_on_sigterm,
    median,
    three_step_app,
    wait_done,
)

CONCURRENCY = 16
BATCH = 100
IDLE = 0.5  # seconds the worker runs idle before the first start, as in a service
TIMEOUT = 600.0  # seconds to wait for the N completions of one scene
DBOS_QUEUE = "bench"

DRAIN = "drain"
LOOP = "loop, same process"
BATCHES = "start_many, same process"
OTHER = "loop, other process"
SCENES = [DRAIN, LOOP, BATCHES, OTHER]


# -- the systems --------------------------------------------------------------------------


class System:
    """One system set up on a fresh database: starts workflows and runs a worker."""

    key: ClassVar[str]
    schema: ClassVar[str]  # where its tables are (for storage per step)
    done_query: ClassVar[str]  # the count of completed workflows
    scenes: ClassVar[list[str]] = [DRAIN, LOOP, OTHER]

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def start(self) -> None:
        """Start one workflow with the system's normal call."""
        raise NotImplementedError

    def start_all(self, n: int) -> None:
        """Start n workflows before any worker runs (not timed)."""
        for _ in range(n):
            self.start()

    def start_batch(self, n: int) -> None:
        raise NotImplementedError

    def prepare_worker(self) -> None:
        """What has to happen before the worker starts and is not part of its start."""

    def worker(self) -> AbstractContextManager[object]:
        """The worker at concurrency 16: runs while the context is open."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise if the worker can no longer make progress."""

    def close(self) -> None:
        """Release everything (the worker is stopped)."""


class Pgdurable(System):
    key = "pgdurable"
    schema = "durable"
    done_query = "SELECT count(*) FROM durable.runs WHERE status = 'completed'"
    scenes = SCENES

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.app = app = three_step_app(dsn)
        _ = app.store  # migrate before timing

    def start(self) -> None:
        self.app.start("three")

    def start_all(self, n: int) -> None:
        self.app.start_many("three", [()] * n)

    def start_batch(self, n: int) -> None:
        self.app.start_many("three", [()] * n)

    def worker(self) -> AbstractContextManager[object]:
        return self.app.worker(concurrency=CONCURRENCY)

    def close(self) -> None:
        self.app.close()


@cache
def _dbos_three() -> Callable[[], None]:
    """DBOS's workflow, registered once per process (DBOS's registry outlives instances);
    its source is part of DBOS's application version, so a client process running this
    file enqueues workflows the worker here will dequeue."""
    from dbos import DBOS

    @DBOS.step(name="noop")
    def noop(i: int) -> int:
        return i

    @DBOS.workflow(name="three")
    def three() -> None:
        noop(0)
        noop(1)
        noop(2)

    return three


class Dbos(System):
    key = "dbos"
    schema = "dbos"
    done_query = (
        "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS' AND name = 'three'"
    )

    def __init__(self, dsn: str) -> None:
        from dbos import DBOS

        super().__init__(dsn)
        self.three = _dbos_three()
        # a DBOS instance that dequeues nothing creates the queue and starts the drain's runs
        DBOS(config=dbos_config(dsn))
        DBOS.listen_queues([])
        DBOS.launch()
        self.queue = DBOS.register_queue(
            DBOS_QUEUE, worker_concurrency=CONCURRENCY, polling_interval_sec=DBOS_POLL
        )

    def start(self) -> None:
        self.queue.enqueue(self.three)

    def prepare_worker(self) -> None:
        from dbos import DBOS

        DBOS.destroy()
        DBOS(config=dbos_config(self.dsn))

    @contextmanager
    def worker(self) -> Iterator[object]:
        from dbos import DBOS

        DBOS.launch()
        try:
            yield None
        finally:
            DBOS.destroy()

    def close(self) -> None:
        from dbos import DBOS

        DBOS.destroy()


class Absurd(System):
    key = "absurd"
    schema = "absurd"
    done_query = f"SELECT count(*) FROM absurd.t_{ABSURD_QUEUE} WHERE state = 'completed'"

    def __init__(self, dsn: str, *, install: bool = True) -> None:
        from absurd_sdk import Absurd as Client
        from absurd_sdk import TaskContext

        super().__init__(dsn)
        if install:
            absurd_init(dsn, ABSURD_QUEUE)
        app = Client(absurd_url(dsn), queue_name=ABSURD_QUEUE)

        def noop(i: int) -> int:
            return i

        @app.register_task(name="three")
        def three(params: Any, ctx: TaskContext) -> None:
            ctx.step("noop", partial(noop, 0))
            ctx.step("noop", partial(noop, 1))
            ctx.step("noop", partial(noop, 2))

        self.app = app
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        self.app.spawn("three", {})

    def _run_worker(self) -> None:
        try:
            self.app.start_worker(concurrency=CONCURRENCY)
        except BaseException as exc:  # reported by check()
            self._error = exc

    @contextmanager
    def worker(self) -> Iterator[object]:
        thread = threading.Thread(target=self._run_worker, name="absurd-worker")
        self._thread = thread
        thread.start()
        try:
            yield None
        finally:
            while thread.is_alive():  # also if stop came before start_worker began
                self.app.stop_worker()
                thread.join(0.1)
            self._thread = None

    def check(self) -> None:
        if self._thread is not None and not self._thread.is_alive():
            raise SystemExit(f"Absurd's worker stopped: {self._error!r}")

    def close(self) -> None:
        self.app.close()


FACTORIES: dict[str, type[System]] = {
    "pgdurable": Pgdurable,
    "dbos": Dbos,
    "absurd": Absurd,
}


# -- the scenes ---------------------------------------------------------------------------


@dataclass
class Sample:
    rate: float  # workflows/s
    start_ms: float | None  # median latency of the start call
    bytes_per_step: float | None = None  # the drain's: what its schema grew by, per step


def client_command(key: str, dsn: str, n: int) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--client",
        key,
        "--client-dsn",
        dsn,
        "--runs",
        str(n),
    ]


def client_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "PYTHONWARNINGS": "ignore"}
    env.pop("DURABLE_DSN", None)
    return env


def run_client(key: str, dsn: str, n: int) -> dict[str, Any]:
    """The other process: starts n workflows one by one; its first start's monotonic
    time and every start's latency."""
    system = Absurd(dsn, install=False) if key == "absurd" else FACTORIES[key](dsn)
    latencies: list[float] = []
    first = time.monotonic()
    for _ in range(n):
        s = time.perf_counter()
        system.start()
        latencies.append(time.perf_counter() - s)
    system.close()
    return {"first": first, "latencies": latencies}


def scene(server: BenchServer, key: str, name: str, n: int, rep: int) -> Sample:
    """One scene of one system on a fresh database."""
    dbname = f"bench_swr_{key}_{rep}"
    dsn = server.create_database(dbname)
    system = FACTORIES[key](dsn)
    latencies: list[float] = []
    stored: float | None = None
    try:
        if name == DRAIN:
            empty = schema_bytes(dsn, system.schema)
            system.start_all(n)
            system.prepare_worker()
            t0 = time.monotonic()
            with system.worker():
                end = wait_done(dsn, system.done_query, n, check=system.check, timeout=TIMEOUT)
            stored = (schema_bytes(dsn, system.schema) - empty) / (3 * n)
        else:
            system.prepare_worker()
            with system.worker():
                time.sleep(IDLE)
                if name == OTHER:
                    t0, end, latencies = other_process(system, key, dsn, n)
                else:
                    t0 = time.monotonic()
                    for i in range(0, n, BATCH if name == BATCHES else 1):
                        s = time.perf_counter()
                        if name == BATCHES:
                            system.start_batch(min(BATCH, n - i))
                            latencies.append((time.perf_counter() - s) / min(BATCH, n - i))
                        else:
                            system.start()
                            latencies.append(time.perf_counter() - s)
                    end = wait_done(dsn, system.done_query, n, check=system.check, timeout=TIMEOUT)
    finally:
        system.close()
        server.drop_database(dbname)
    rate = n / (end - t0)
    print(f"  {key:<10} {name:<26} {rate:8.0f} workflows/s", file=sys.stderr, flush=True)
    return Sample(rate, median(latencies) * 1000 if latencies else None, stored)


def schema_bytes(dsn: str, schema: str) -> int:
    """Every table of ``schema`` with its indexes and TOAST, as the drain left them (the
    dead versions of updated rows included, as on a live system between vacuums)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class AS c "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'm')",
            (schema,),
        ).fetchone()
    return int(row[0]) if row else 0


def other_process(system: System, key: str, dsn: str, n: int) -> tuple[float, float, list[float]]:
    """(first start, N-th completion, start latencies) with a client process starting."""
    with subprocess.Popen(
        client_command(key, dsn, n),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=client_env(),
    ) as proc:

        def check() -> None:
            system.check()
            if proc.poll() not in (None, 0):
                stderr = proc.stderr.read() if proc.stderr else ""
                tail = "\n".join(stderr.strip().splitlines()[-25:])
                raise SystemExit(f"the {key} client failed (exit {proc.returncode}):\n{tail}")

        try:
            end = wait_done(dsn, system.done_query, n, check=check, timeout=TIMEOUT)
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
        except BaseException:
            proc.kill()
            raise
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"the {key} client failed (exit {proc.returncode}):\n{stderr}")
    out = json.loads(lines[-1])
    return float(out["first"]), end, [float(x) for x in out["latencies"]]


# -- the table ----------------------------------------------------------------------------


def render(
    results: dict[tuple[str, str], list[Sample]], systems: list[str], label: dict[str, str]
) -> str:
    rate = {k: median([s.rate for s in v]) for k, v in results.items()}
    peers = [s for s in ("dbos", "absurd") if s in systems]
    header = ["scene", "system", "workflows/s", "vs drain", "start ms (median)"]
    header += [f"vs {label[p].split()[0]}" for p in peers]
    body: list[list[str]] = []
    for name in SCENES:
        first = True
        for key in systems:
            if (key, name) not in results:
                continue
            value = rate[(key, name)]
            latencies = [s.start_ms for s in results[(key, name)] if s.start_ms is not None]
            row = [
                name if first else "",
                label[key],
                f"{value:.0f}",
                f"{value / rate[(key, DRAIN)]:.2f}x",
                f"{median(latencies):.2f}" if latencies else "-",
            ]
            for peer in peers:
                other = rate.get((peer, name))
                shown = f"{value / other:.2f}x" if other else "-"
                row.append(shown if key == "pgdurable" else "")
            body.append(row)
            first = False
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return " ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), *(line(r) for r in body)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="workflows per scene")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every scene")
    parser.add_argument("--dsn", help="an existing server (default: a throwaway embedded one)")
    parser.add_argument("--skip-dbos", action="store_true", help="do not run DBOS")
    parser.add_argument("--skip-absurd", action="store_true", help="do not run Absurd")
    parser.add_argument("--json", type=Path, help="also write the medians here")
    parser.add_argument("--client", choices=sorted(FACTORIES), help=argparse.SUPPRESS)
    parser.add_argument("--client-dsn", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        out = run_client(args.client, args.client_dsn, args.runs)
        sys.stdout.write("\n" + json.dumps(out) + "\n")
        return 0

    systems = ["pgdurable"]
    label = {"pgdurable": "pgdurable"}
    notes: list[str] = []
    for key, name, dist, module, skip in (
        ("dbos", "DBOS", "dbos", "dbos", args.skip_dbos),
        ("absurd", "Absurd", "absurd-sdk", "absurd_sdk", args.skip_absurd),
    ):
        found = installed(dist, module)
        if key == "absurd" and absurdctl_path() is None:
            found = None
        if skip:
            notes.append(f"{name} skipped (--skip-{key}); to compare, install it: {INSTALL}")
        elif found is None:
            notes.append(f"{name} is not installed: left out (install it with: {INSTALL})")
        else:
            systems.append(key)
            label[key] = f"{name} {found}"

    results: dict[tuple[str, str], list[Sample]] = {}
    with BenchServer(dsn=args.dsn) as server:
        print(
            f"PostgreSQL {server.version}; {os.cpu_count()} CPUs; {', '.join(systems)}",
            file=sys.stderr,
            flush=True,
        )
        for rep in range(args.reps):
            for name in SCENES:  # interleaved: a noisy moment hits every system alike
                for key in systems:
                    if name in FACTORIES[key].scenes:
                        sample = scene(server, key, name, args.runs, rep)
                        results.setdefault((key, name), []).append(sample)
    print(
        f"{args.runs} workflows of 3 no-op steps, worker concurrency {CONCURRENCY}, "
        f"median of {args.reps}"
    )
    print(render(results, systems, label))
    print("vs drain: over the system's own drain.", end="")
    if len(systems) > 1:
        print(" vs DBOS, vs Absurd: pgdurable's workflows/s over the peer's in the same scene.")
    else:
        print()
    stored = {
        key: median([x.bytes_per_step for x in results[(key, DRAIN)] if x.bytes_per_step])
        for key in systems
        if (key, DRAIN) in results
    }
    print(
        "storage per step (what the drain added to the system's tables, indexes and TOAST, "
        "the runs' starts and ends included, over its steps): "
        + ", ".join(f"{label[k]} {v:,.0f} bytes" for k, v in stored.items())
    )
    if "dbos" in systems:
        print(f"DBOS: its queue polls every {DBOS_POLL} s (default 1.0), otherwise defaults.")
    if "absurd" in systems:
        print("Absurd: SDK defaults (one connection per client, worker poll 0.25 s).")
    for note in notes:
        print(f"Note: {note}")
    if args.json:
        medians = {
            f"{key}|{name}": {
                "rate": median([x.rate for x in samples]),
                "start_ms": median(lat)
                if (lat := [x.start_ms for x in samples if x.start_ms])
                else None,
            }
            for (key, name), samples in results.items()
        }
        raw = {
            "server": server.version,
            "label": label,
            "reps": args.reps,
            "medians": medians,
            "bytes_per_step": stored,
        }
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    exit_on_sigterm()
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
