"""What the scheduler costs the database: at rest with 1,000 idle schedules, and per tick.

It starts its own PostgreSQL (the benchmark server, pg_stat_statements preloaded) and
measures two scenes with one worker process (this one), counting the statements
pg_stat_statements records for the database (the claim loop's and heartbeat's included,
since they are what an idle worker costs too):

- at rest: 1,000 schedules whose next tick is hours away, a worker idle for ``--seconds``;
- firing: one schedule every second, a worker running it for ``--seconds``.

Prints statements per minute for each, the scheduler's share, and statements per tick.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import BenchServer

import durable

SCHEDULER_WORDS = ("schedules", "now()")


def _scene(server: BenchServer, dbname: str, seconds: float, idle: bool) -> dict[str, Any]:
    dsn = server.create_database(dbname)
    app = durable.App(dsn)

    @app.workflow(name="noop")
    def noop(ctx: durable.Context) -> None:
        return None
        yield  # a generator

    if idle:
        for i in range(1000):
            app.schedule(f"idle-{i:04d}", noop, cron="0 3 * * *", timezone="Europe/Berlin")
    else:
        app.schedule("beat", noop, every=1)
    app.stats()  # migrate
    with app.worker(concurrency=4):
        time.sleep(3)  # the worker writes the declarations, then settles
        server.reset_statements()
        began = time.monotonic()
        time.sleep(seconds)
        took = time.monotonic() - began
    stmts = server.statements(dbname)
    ticks = 0
    if not idle:
        ticks = app.list_runs(workflow="noop", limit=1).total
    app.close()
    total = sum(c for _, c, _ in stmts)
    sched = sum(c for q, c, _ in stmts if "schedules" in q or q.strip() == "SELECT now()")
    return {"seconds": took, "total": total, "scheduler": sched, "ticks": ticks, "stmts": stmts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each scene")
    args = parser.parse_args(argv)
    with BenchServer() as server:
        if not server.has_pgss:
            print(f"pg_stat_statements is not available: {server.pgss_reason}", file=sys.stderr)
            return 1
        rest = _scene(server, "bench_sched_rest", args.seconds, idle=True)
        firing = _scene(server, "bench_sched_fire", args.seconds, idle=False)
    per_min = 60.0 / rest["seconds"]
    print(f"PostgreSQL {server.version}; one worker; {args.seconds:g} s per scene\n")
    print(f"{'scene':<34}{'statements/min':>16}{'of them scheduler':>20}")
    print(
        f"{'at rest, 1,000 idle schedules':<34}{rest['total'] * per_min:>16,.1f}"
        f"{rest['scheduler'] * per_min:>20,.1f}"
    )
    per_min = 60.0 / firing["seconds"]
    print(
        f"{'one schedule firing every second':<34}{firing['total'] * per_min:>16,.1f}"
        f"{firing['scheduler'] * per_min:>20,.1f}"
    )
    fired = max(firing["ticks"], 1)
    per_tick = firing["scheduler"] / firing["seconds"]
    print(f"\nscheduler statements per tick (one tick a second): {per_tick:.1f}")
    print("\nthe scheduler's statements at rest:")
    for query, calls, _ in rest["stmts"]:
        if "schedules" in query or query.strip() == "SELECT now()":
            print(f"  {calls:>6}  {' '.join(query.split())[:90]}")
    print(f"\n(runs started by the firing scene, its warm-up included: {fired})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
