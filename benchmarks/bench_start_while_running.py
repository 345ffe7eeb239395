"""The shape users run: runs started while workers run, in one process and in two.

    python benchmarks/bench_start_while_running.py [--runs 1000] [--reps 3] [--dsn DSN]

Each scene runs N workflows of three no-op steps on a fresh database of one server (by
default a throwaway embedded PostgreSQL 18; fsync and synchronous_commit on), with a
worker at concurrency 16, and takes the time from the first start to the last end:

- drain: all N started first (one ``start_many``), then the worker starts: the
  favourable shape, the reference for the others;
- loop, same process: the worker runs while a thread of the same process calls
  ``app.start`` N times;
- start_many, same process: the same, in batches of 100 with ``app.start_many``;
- loop, other process: a separate client process calls ``app.start`` N times while
  the worker runs here.

Prints workflows/s per scene (median of ``--reps``), its ratio to the drain, and the
median ``app.start`` latency seen by the client in each scene.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import psycopg  # noqa: E402
from _server import BenchServer, median  # noqa: E402

import durable  # noqa: E402

BATCH = 100
CLIENT = textwrap.dedent(
    """
    import sys, time, json
    import durable
    app = durable.App(sys.argv[1])

    @app.workflow(name="three")
    def three(ctx):
        yield ctx.sleep(0)

    n = int(sys.argv[2])
    latencies = []
    for i in range(n):
        t0 = time.perf_counter()
        app.start("three")
        latencies.append(time.perf_counter() - t0)
    print(json.dumps(latencies))
    app.close()
    """
)


def make_app(dsn: str) -> durable.App:
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


def wait_done(dsn: str, n: int, timeout: float = 600.0) -> float:
    """Until n runs completed; the monotonic time it happened (polls every 20 ms)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM durable.runs WHERE status = 'completed'"
            ).fetchone()
            if row and row[0] >= n:
                return time.monotonic()
            time.sleep(0.02)
    raise SystemExit(f"only some of {n} runs completed within {timeout}s")


def scene(server: BenchServer, name: str, n: int, rep: int) -> tuple[float, float | None]:
    """(workflows/s, median start latency in ms) of one scene."""
    dsn = server.create_database(f"bench_swr_{rep}")
    app = make_app(dsn)
    _ = app.store  # migrate before timing
    latencies: list[float] = []
    if name == "drain":
        t0 = time.monotonic()
        app.start_many("three", [()] * n)
        with app.worker(concurrency=16):
            end = wait_done(dsn, n)
    else:
        with app.worker(concurrency=16):
            time.sleep(0.5)  # the worker is up and idle, as in a service
            t0 = time.monotonic()
            if name == "loop, same process":
                for _ in range(n):
                    s = time.perf_counter()
                    app.start("three")
                    latencies.append(time.perf_counter() - s)
            elif name == "start_many, same process":
                for i in range(0, n, BATCH):
                    s = time.perf_counter()
                    app.start_many("three", [()] * min(BATCH, n - i))
                    latencies.append((time.perf_counter() - s) / min(BATCH, n - i))
            else:  # loop, other process
                done = subprocess.run(
                    [sys.executable, "-c", CLIENT, dsn, str(n)],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**os.environ, "PYTHONPATH": str(HERE.parent)},
                )
                latencies = [float(x) for x in done.stdout.strip().strip("[]").split(",")]
            end = wait_done(dsn, n)
    app.close()
    server.drop_database(f"bench_swr_{rep}")
    rate = n / (end - t0)
    return rate, (median(latencies) * 1000 if latencies else None)


SCENES = ["drain", "loop, same process", "start_many, same process", "loop, other process"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dsn", help="an existing server (default: a throwaway embedded one)")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float | None]]] = {s: [] for s in SCENES}
    with BenchServer(dsn=args.dsn) as server:
        for rep in range(args.reps):
            for name in SCENES:  # interleaved: a noisy moment hits every scene alike
                results[name].append(scene(server, name, args.runs, rep))
    drain = median([r for r, _ in results["drain"]])
    print(f"{args.runs} workflows of 3 steps, worker concurrency 16, median of {args.reps}")
    print(f"{'scene':<28} {'workflows/s':>12} {'vs drain':>9} {'start ms (median)':>18}")
    for name in SCENES:
        rate = median([r for r, _ in results[name]])
        lat = [x for _, x in results[name] if x is not None]
        shown = f"{median(lat):.2f}" if lat else "-"
        print(f"{name:<28} {rate:>12.0f} {rate / drain:>8.2f}x {shown:>18}")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    raise SystemExit(main())
