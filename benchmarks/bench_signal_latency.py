"""How soon a waiting run moves after a signal.

    python benchmarks/bench_signal_latency.py            # 1,000 signals per scenario
    python benchmarks/bench_signal_latency.py --quick    # 200
    python benchmarks/bench_signal_latency.py --dsn URL  # an existing server

Measures the time from ``app.signal(...)`` returning to the start of the next step of
the run that waited for it. The workflow loops ``yield ctx.wait_signal("go")`` then
``yield mark(tag, i)``; the step ``mark`` records ``time.perf_counter()`` when it starts
(the worker runs in this process: ``app.worker()``). The benchmark sends a signal, notes
when ``app.signal`` returned, waits until the step ran, then sends the next. Scenarios:

- 1 run, back to back: the next signal is sent as soon as the step started, so it often
  reaches the run while the worker still holds it;
- 1 run, parked: the next signal is sent once the run's status is ``waiting`` (the
  worker has recorded the wait and given the run back);
- 20 runs, round-robin: signals go to 20 waiting runs in turn, so every run is parked
  when its signal arrives.

Targets: p50 under 5 ms, p99 under 25 ms. A few signals per scenario warm up first and
are not counted. By default a throwaway embedded PostgreSQL server is started (default
durability) and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _server import BenchServer, exit_on_sigterm, median, percentile  # noqa: E402

import durable  # noqa: E402

TARGET_P50_MS = 5.0
TARGET_P99_MS = 25.0
WARMUP = 20
WAIT_TIMEOUT = 30.0  # seconds to wait for one step before giving up

_marks: dict[tuple[str, int], float] = {}
_cond = threading.Condition()


def build_app(dsn: str) -> durable.App:
    app = durable.App(dsn)

    @app.step(name="mark")
    def mark(tag: str, i: int) -> int:
        now = time.perf_counter()
        with _cond:
            _marks[(tag, i)] = now
            _cond.notify_all()
        return i

    @app.workflow(name="signal_loop")
    def signal_loop(ctx: durable.Context, tag: str, n: int) -> Generator[Any, Any, int]:
        for i in range(n):
            yield ctx.wait_signal("go")
            yield mark(tag, i)
        return n

    return app


def wait_mark(key: tuple[str, int]) -> float:
    deadline = time.monotonic() + WAIT_TIMEOUT
    with _cond:
        while key not in _marks:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"step {key} did not start within {WAIT_TIMEOUT:g}s")
            _cond.wait(left)
        return _marks[key]


def wait_status(app: durable.App, run_id: str, status: str) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT
    handle = app.handle(run_id)
    while handle.status() != status:
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} not {status} within {WAIT_TIMEOUT:g}s")
        time.sleep(0.0005)


@dataclass
class Scenario:
    name: str
    runs: int
    parked: bool


@dataclass
class Result:
    scenario: Scenario
    latencies_ms: list[float]
    signal_call_ms: list[float]


def measure(app: durable.App, scenario: Scenario, signals: int) -> Result:
    per_run = -(-signals // scenario.runs) + WARMUP
    tags = [f"{scenario.name}-{k}" for k in range(scenario.runs)]
    run_ids = [app.start("signal_loop", tag, per_run).run_id for tag in tags]
    for run_id in run_ids:
        wait_status(app, run_id, "waiting")
    latencies: list[float] = []
    calls: list[float] = []
    sent = 0
    i = 0
    while sent < signals:
        for tag, run_id in zip(tags, run_ids, strict=True):
            if sent >= signals:
                break
            if scenario.parked:
                wait_status(app, run_id, "waiting")
            before = time.perf_counter()
            app.signal(run_id, "go", i)
            returned = time.perf_counter()
            started = wait_mark((tag, i))
            if i >= WARMUP:
                latencies.append((started - returned) * 1000.0)
                calls.append((returned - before) * 1000.0)
                sent += 1
        i += 1
    return Result(scenario, latencies, calls)


def render(results: list[Result]) -> str:
    header = ["scenario", "signals", "p50 ms", "p90 ms", "p99 ms", "max ms", "signal() p50"]
    header += ["target", "met?"]
    body = []
    for r in results:
        lat = r.latencies_ms
        p50, p99 = percentile(lat, 50), percentile(lat, 99)
        met = p50 < TARGET_P50_MS and p99 < TARGET_P99_MS
        body.append(
            [
                r.scenario.name,
                f"{len(lat):,}",
                f"{p50:.2f}",
                f"{percentile(lat, 90):.2f}",
                f"{p99:.2f}",
                f"{max(lat):.2f}",
                f"{median(r.signal_call_ms):.2f} ms",
                f"p50 < {TARGET_P50_MS:g}, p99 < {TARGET_P99_MS:g}",
                "yes" if met else "NO",
            ]
        )
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in (0, 7, 8) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(b) for b in body])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="an existing PostgreSQL server (default: start one)")
    parser.add_argument("--quick", action="store_true", help="200 signals per scenario")
    parser.add_argument("--signals", type=int, help="signals per scenario (default 1000)")
    parser.add_argument("--runs", type=int, default=20, help="runs of the round-robin scenario")
    parser.add_argument("--concurrency", type=int, default=16, help="the worker's concurrency")
    parser.add_argument("--json", type=Path, help="also write the percentiles here")
    args = parser.parse_args(argv)
    signals = args.signals or (200 if args.quick else 1000)
    scenarios = [
        Scenario("1 run, back to back", 1, parked=False),
        Scenario("1 run, parked", 1, parked=True),
        Scenario(f"{args.runs} runs, round-robin", args.runs, parked=False),
    ]
    results: list[Result] = []
    with BenchServer(dsn=args.dsn, stat_statements=False) as server:
        dsn = server.create_database("bench_signal_latency")
        print(f"PostgreSQL {server.version}; {signals:,} signals per scenario", file=sys.stderr)
        app = build_app(dsn)
        try:
            with app.worker(concurrency=args.concurrency):
                for scenario in scenarios:
                    results.append(measure(app, scenario, signals))
                    r = results[-1]
                    print(
                        f"  {scenario.name:<24} p50 {percentile(r.latencies_ms, 50):6.2f} ms  "
                        f"p99 {percentile(r.latencies_ms, 99):6.2f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            app.close()
    print()
    print(render(results))
    print()
    print(
        "Latency: from app.signal() returning to the waiting run's next step starting "
        "(same process, time.perf_counter). signal() p50: how long the call itself took."
    )
    if args.json:
        raw = {
            "server": server.version,
            "scenarios": {
                r.scenario.name: {q: percentile(r.latencies_ms, q) for q in (50, 90, 99)}
                for r in results
            },
        }
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    exit_on_sigterm()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
