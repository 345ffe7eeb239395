"""How fast the engine replays a log from scratch (no database involved).

    python benchmarks/bench_replay.py

Builds logs of 10, 1,000 and 10,000 events (a workflow of sequential steps: one
``step_completed`` per step after ``run_started``), replays each from scratch several
times with a fresh engine, and prints the median time per replay, the events per second
and the 10k/1k ratio. Targets: a 10,000-event replay under 100 ms, and a 10k/1k ratio of
at most 12 (replay is linear in the log's length).

A second table replays logs where every other event is not a step result (a retried
attempt before each result) and ends with ``run_completed``: 10,000 events, 4,999 steps.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Generator
from datetime import UTC, datetime, timedelta
from typing import Any

from durable.replay import Completed, Context, Engine, HistoryEvent, StepCall, current_context

TARGET_10K_MS = 100.0
TARGET_RATIO = 12.0
START = datetime(2024, 1, 1, tzinfo=UTC)


class Step:
    """What the durable layer's step wrapper does inside a workflow, and no more."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any) -> StepCall:
        ctx = current_context()
        assert ctx is not None
        call = StepCall(self.name, args, {}, self)
        ctx._created(call)
        return call


increment = Step("increment")


def count_up(ctx: Context, steps: int) -> Generator[Any, Any, int]:
    total = 0
    for _ in range(steps):
        total = yield increment(total)
    return total


def decode(kind: str, name: str, raw: Any) -> Any:
    return tuple(raw) if kind == "args" else raw


def steps_log(events: int) -> list[HistoryEvent]:
    """``run_started`` + ``events - 1`` step results."""
    steps = events - 1
    log = [
        HistoryEvent(1, "run_started", {"workflow": "count_up", "args": [steps], "seed": 1}, START)
    ]
    for pos in range(1, steps + 1):
        data = {"pos": pos, "name": "increment", "attempt": 1, "result": pos}
        log.append(HistoryEvent(pos + 1, "step_completed", data, START + timedelta(seconds=pos)))
    return log


def retried_steps_log(events: int) -> list[HistoryEvent]:
    """``run_started``, pairs of (failed attempt, result), ``run_completed``: about half steps."""
    steps = (events - 1) // 2
    log = [
        HistoryEvent(1, "run_started", {"workflow": "count_up", "args": [steps], "seed": 1}, START)
    ]
    for pos in range(1, steps + 1):
        when = START + timedelta(seconds=pos)
        failed = {
            "pos": pos,
            "name": "increment",
            "attempt": 1,
            "error_type": "TimeoutError",
            "message": "slow",
            "retry_at": (when + timedelta(seconds=1)).isoformat(),
        }
        log.append(HistoryEvent(len(log) + 1, "step_attempt_failed", failed, when))
        done = {"pos": pos, "name": "increment", "attempt": 2, "result": pos}
        log.append(HistoryEvent(len(log) + 1, "step_completed", done, when))
    while len(log) < events:  # the terminal event, checked against the code's outcome
        log.append(
            HistoryEvent(len(log) + 1, "run_completed", {"result": steps}, log[-1].created_at)
        )
    return log


def median_ms(log: list[HistoryEvent], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        engine = Engine(count_up, workflow="count_up", run_id="bench", decode=decode)
        engine.feed(log, replaying=True)
        times.append(time.perf_counter() - started)
        assert isinstance(engine.outcome, Completed), engine.outcome
    return statistics.median(times) * 1000


def table(title: str, build: Callable[[int], list[HistoryEvent]], repeats: int) -> bool:
    print(f"\n{title}")
    print(f"{'events':>8} {'steps':>7} {'median ms':>10} {'events/s':>12}")
    results: dict[int, float] = {}
    for size in (10, 1_000, 10_000):
        log = build(size)
        steps = sum(1 for e in log if e.type == "step_completed")
        ms = median_ms(log, repeats)
        results[size] = ms
        print(f"{len(log):>8} {steps:>7} {ms:>10.3f} {len(log) / ms * 1000:>12,.0f}")
    ratio = results[10_000] / results[1_000]
    fast = results[10_000] < TARGET_10K_MS
    linear = ratio <= TARGET_RATIO
    print(
        f"10k replay {results[10_000]:.1f} ms (target < {TARGET_10K_MS:.0f} ms: "
        f"{'ok' if fast else 'MISSED'}); 10k/1k ratio {ratio:.1f} "
        f"(target <= {TARGET_RATIO:.0f}: {'ok' if linear else 'MISSED'})"
    )
    return fast and linear


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="replays per size (median)")
    options = parser.parse_args()
    ok = table("steps only (one event per step)", steps_log, options.repeats)
    ok &= table("a retried attempt before every result", retried_steps_log, options.repeats)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
