"""Async steps awaited concurrently on one worker's event loop.

    python benchmarks/bench_async_steps.py            # 200 steps sleeping 1 s, concurrency 200
    python benchmarks/bench_async_steps.py --dsn URL  # an existing server

Each step is ``async def nap(i): await asyncio.sleep(1.0); return i``. Two scenarios, on
one worker started in this process (``app.worker(concurrency=200)``) and warmed up with a
one-step workflow first:

- one workflow, ``ctx.all`` of 200 steps: timed from ``app.start`` to ``.result()``;
- 200 runs of one step each: timed from the first ``app.start`` to the last result.

Ideal: the sleep itself (1 s) plus the cost of recording 200 results. By default a
throwaway embedded PostgreSQL server is started (default durability) and removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _server import BenchServer, exit_on_sigterm  # noqa: E402

import durable  # noqa: E402


def build_app(dsn: str, seconds: float) -> durable.App:
    app = durable.App(dsn)

    @app.step(name="nap")
    async def nap(i: int) -> int:
        await asyncio.sleep(seconds)
        return i

    @app.workflow(name="fan_out")
    def fan_out(ctx: durable.Context, n: int) -> Generator[Any, Any, int]:
        results = yield ctx.all(*(nap(i) for i in range(n)))
        return len(results)

    @app.workflow(name="one_nap")
    def one_nap(ctx: durable.Context, i: int) -> Generator[Any, Any, int]:
        return (yield nap(i))

    return app


def fan_out(app: durable.App, steps: int) -> float:
    began = time.perf_counter()
    run = app.start("fan_out", steps)
    assert run.result(timeout=300) == steps
    return time.perf_counter() - began


def many_runs(app: durable.App, runs: int) -> float:
    began = time.perf_counter()
    handles = [app.start("one_nap", i) for i in range(runs)]
    for i, handle in enumerate(handles):
        assert handle.result(timeout=300) == i
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="an existing PostgreSQL server (default: start one)")
    parser.add_argument("--steps", type=int, default=200, help="concurrent steps (default 200)")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds each step sleeps")
    parser.add_argument("--concurrency", type=int, default=200, help="the worker's concurrency")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    with BenchServer(dsn=args.dsn, stat_statements=False) as server:
        dsn = server.create_database("bench_async_steps")
        print(
            f"PostgreSQL {server.version}; {args.steps} async steps sleeping {args.sleep:g}s, "
            f"concurrency {args.concurrency}",
            file=sys.stderr,
        )
        app = build_app(dsn, args.sleep)
        try:
            with app.worker(concurrency=args.concurrency):
                app.start("one_nap", -1).result(timeout=60)  # warm up
                rows = [
                    (f"1 workflow, ctx.all of {args.steps} steps", fan_out(app, args.steps)),
                    (f"{args.steps} runs of 1 step", many_runs(app, args.steps)),
                ]
        finally:
            app.close()
    print()
    width = max(len(name) for name, _ in rows)
    print(f"{'scenario'.ljust(width)}  wall time  vs sleep")
    for name, wall in rows:
        print(f"{name.ljust(width)}  {wall:8.2f}s  {wall / args.sleep:7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
