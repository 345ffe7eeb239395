"""pgdurable at a million runs: the same measurements on an empty database and on a
loaded one, in the same invocation, on the same server.

    python benchmarks/bench_scale.py [--runs 1000000] [--active 10000] [--dsn DSN]

The loaded database gets ``--runs`` finished runs (completed, failed, cancelled; five
workflows; created over 30 days) with 10 events each (the start, four steps as a
``step_completed`` each with a small result, a status, three timers' events and the
end), plus ``--active`` active runs (half sleeping until tomorrow, half waiting for a
signal), written with INSERT ... SELECT (the quickest way to a big table), then
VACUUM ANALYZE, as autovacuum would have done by then. Then, on each database:

- throughput: 2,000 workflows of 3 steps started with ``start_many`` and drained by a
  worker at concurrency 16 (claims and steps), workflows/s;
- ``list_runs`` by status and by search (an argument's value, a custom status, an
  idempotency key, each matching one run or a few), median of 15, ms;
- ``get_run`` and ``history`` of one finished run, median of 50, ms;

and on the loaded one only, ``prune`` of the oldest half of the finished runs (rows per
second) while the same drain runs beside it in the same process: its throughput against
the one measured without, and the longest claim statement the server saw meanwhile
(``pg_stat_statements.max_exec_time``, when available). Storage per step is the size of
``events`` and its indexes over the events the drain wrote, from the empty database.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _server import BenchServer, median, three_step_app, wait_done

import durable

DRAIN = 2000
LOCK_WAIT_MS = 20  # lock waits longer than this are logged (deadlock_timeout)

_LOAD_RUNS = """
INSERT INTO durable.runs (run_id, workflow, status, created_at, started_at, finished_at,
                          updated_at, last_seq, history_start, error, idempotency_key,
                          custom_status, search_args)
SELECT 'r' || lpad(i::text, 8, '0'),
       (ARRAY['checkout','refund','newsletter','import_csv','sync_crm'])[1 + i %% 5],
       CASE WHEN i %% 50 = 0 THEN 'failed' WHEN i %% 97 = 0 THEN 'cancelled'
            ELSE 'completed' END,
       t, t, t + make_interval(secs => 0.5 + (i %% 40) * 0.1), t, 10, 1,
       CASE WHEN i %% 50 = 0 THEN '{"error_type": "ValueError", "message": "bad row"}'::jsonb END,
       'key-' || md5(i::text),
       jsonb_build_object('stage', 'shipped', 'tracking', 'TRK' || (i::bigint * 7919 %% 10000000)),
       jsonb_build_array('order-' || i, 'customer-' || (i %% 50000) || '@example.com')::text
FROM generate_series(1, %(n)s) AS i,
     LATERAL (SELECT now() - make_interval(secs => (%(n)s - i) * (2592000.0 / %(n)s))) AS c(t)
"""

_LOAD_EVENTS = """
INSERT INTO durable.events (run_id, seq, type, data, created_at)
SELECT r.run_id, s.seq, s.type, s.data, r.created_at
FROM durable.runs AS r,
     LATERAL (VALUES
        (1, 'run_started', jsonb_build_object('workflow', r.workflow,
              'args', (r.search_args)::jsonb, 'seed', 7)),
        (2, 'step_completed', '{"pos": 0, "step": "reserve", "result": {"ok": true}}'::jsonb),
        (3, 'timer_started', '{"pos": 1, "seconds": 1}'::jsonb),
        (4, 'timer_fired', '{"pos": 1}'::jsonb),
        (5, 'step_completed', '{"pos": 2, "step": "charge", "result": {"id": "ch_1"}}'::jsonb),
        (6, 'status_set', '{"value": {"stage": "shipped"}}'::jsonb),
        (7, 'step_completed', '{"pos": 3, "step": "ship", "result": "TRK1"}'::jsonb),
        (8, 'wait_started', '{"pos": 4, "name": "delivered"}'::jsonb),
        (9, 'step_completed', '{"pos": 5, "step": "notify", "result": null}'::jsonb),
        (10, CASE r.status WHEN 'completed' THEN 'run_completed'
                           WHEN 'failed' THEN 'run_failed' ELSE 'run_cancelled' END,
             '{"result": "ok"}'::jsonb)) AS s(seq, type, data)
"""

_LOAD_ACTIVE = """
INSERT INTO durable.runs (run_id, workflow, status, wake_at, created_at, started_at,
                          updated_at, last_seq, history_start, search_args)
SELECT 'a' || lpad(i::text, 6, '0'), 'checkout', 'waiting',
       CASE WHEN i %% 2 = 0 THEN now() + interval '1 day' END, now(), now(), now(), 1, 1,
       '["active"]'
FROM generate_series(1, %(n)s) AS i
"""

_LOAD_ACTIVE_EVENTS = """
INSERT INTO durable.events (run_id, seq, type, data, created_at)
SELECT run_id, 1, 'run_started', '{"workflow": "checkout", "args": ["active"], "seed": 1}', now()
FROM durable.runs WHERE run_id LIKE 'a%'
"""


def load(dsn: str, runs: int, active: int) -> float:
    start = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_LOAD_RUNS, {"n": runs})
        conn.execute(_LOAD_EVENTS)
        conn.execute(_LOAD_ACTIVE, {"n": active})
        conn.execute(_LOAD_ACTIVE_EVENTS)
        conn.execute("VACUUM ANALYZE durable.runs")
        conn.execute("VACUUM ANALYZE durable.events")
    return time.monotonic() - start


def drain(app: durable.App, dsn: str, tag: str) -> float:
    """Workflows/s of DRAIN three-step runs started at once and drained at c=16."""
    app.start_many("three", [()] * DRAIN, run_ids=[f"{tag}-{i}" for i in range(DRAIN)])
    t0 = time.monotonic()
    with app.worker(concurrency=16):
        end = wait_done(
            dsn,
            "SELECT count(*) FROM durable.runs WHERE run_id LIKE %s AND status = 'completed'",
            DRAIN,
            params=(f"{tag}-%",),
        )
    return DRAIN / (end - t0)


def timed_ms(fn: Any, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return median(times)


def reads(app: durable.App, one: str) -> dict[str, float]:
    return {
        "list_runs(status='failed')": timed_ms(lambda: app.list_runs(status="failed"), 15),
        "list_runs(status='waiting')": timed_ms(lambda: app.list_runs(status="waiting"), 15),
        "list_runs(search=argument)": timed_ms(lambda: app.list_runs(search="order-777777"), 15),
        "list_runs(search=custom status)": timed_ms(lambda: app.list_runs(search="trk4203101"), 15),
        "list_runs(search=idempotency key)": timed_ms(
            lambda: app.list_runs(search="key-" + "c4ca4238a0b9"), 15
        ),
        "get_run": timed_ms(lambda: app.get_run(one), 50),
        "history": timed_ms(lambda: app.history(one), 50),
    }


def log_lock_waits(server: BenchServer, log: Path | None) -> None:
    """Have the server log every lock wait longer than LOCK_WAIT_MS (only a server this
    benchmark started, or one whose log it was given: others keep their settings)."""
    if server.home is None and log is None:
        return
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET log_lock_waits = on")
        conn.execute(f"ALTER SYSTEM SET deadlock_timeout = '{LOCK_WAIT_MS}ms'")
        conn.execute("SELECT pg_reload_conf()")


def lock_waits(server: BenchServer, log: Path | None) -> int:
    """Lock waits the server has logged so far (-1: its log is not ours to read)."""
    log = log or (server.home / "server.log" if server.home else None)
    if log is None or not log.exists():
        return -1
    return log.read_text(errors="replace").count("still waiting for")


def claim_max_ms(server: BenchServer, dbname: str) -> float | None:
    if not server.has_pgss:
        return None
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT max(max_exec_time) FROM pg_stat_statements "
            "WHERE query LIKE %s AND dbid = (SELECT oid FROM pg_database WHERE datname = %s)",
            ("%lease_token = gen_random_uuid()%", dbname),
        ).fetchone()
    return float(row[0]) if row and row[0] is not None else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--active", type=int, default=10_000)
    parser.add_argument("--dsn", help="an existing server (default: a throwaway embedded one)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument(
        "--server-log", type=Path, help="the --dsn server's log, to count its lock waits"
    )
    args = parser.parse_args()
    with BenchServer(dsn=args.dsn) as server:
        log_lock_waits(server, args.server_log)
        empty_dsn = server.create_database("bench_scale_empty")
        big_dsn = server.create_database("bench_scale_big")
        empty, big = three_step_app(empty_dsn), three_step_app(big_dsn)
        _ = empty.store, big.store  # migrate
        seconds = load(big_dsn, args.runs, args.active)
        print(
            f"PostgreSQL {server.version}; loaded {args.runs:,} finished runs x 10 events "
            f"+ {args.active:,} active in {seconds:.0f} s"
        )
        # the empty database gets a few runs to read (one finished, as in the big one)
        empty.start_many("three", [()] * 10, run_ids=[f"seed-{i}" for i in range(10)])
        rate = {"empty": drain(empty, empty_dsn, "e1"), "loaded": drain(big, big_dsn, "b1")}
        rate["empty"] = median([rate["empty"], drain(empty, empty_dsn, "e2")])
        server.reset_statements()
        rate["loaded"] = median([rate["loaded"], drain(big, big_dsn, "b2")])
        claim_max_before = claim_max_ms(server, "bench_scale_big")
        lock_waits_before = lock_waits(server, args.server_log)
        with psycopg.connect(empty_dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT pg_total_relation_size('durable.events'), count(*), "
                "count(*) FILTER (WHERE type = 'step_completed') FROM durable.events"
            ).fetchone()
        assert row is not None
        events_bytes, n_events, n_steps = int(row[0]), int(row[1]), int(row[2])
        r_empty = reads(empty, "e1-0")
        r_big = reads(big, "r" + str(args.runs // 2).zfill(8))

        # prune the oldest half of the finished runs, with a drain beside it
        cutoff = timedelta(days=15)
        server.reset_statements()
        result: dict[str, Any] = {}

        def prune() -> None:
            t0 = time.monotonic()
            result["pruned"] = big.prune(cutoff)
            result["seconds"] = time.monotonic() - t0

        pruner = threading.Thread(target=prune)
        pruner.start()
        time.sleep(1.0)  # the prune is under way
        during = drain(big, big_dsn, "b3")
        overlapped = pruner.is_alive()  # the prune outlasted the drain beside it
        pruner.join()
        claim_max = claim_max_ms(server, "bench_scale_big")
        lock_waits_after = lock_waits(server, args.server_log)
        lock_waits_during = (
            lock_waits_after - lock_waits_before
            if min(lock_waits_after, lock_waits_before) >= 0
            else -1
        )
        pruned = result["pruned"]

        rows = [
            (
                "throughput 2,000 x 3 steps, c=16",
                f"{rate['empty']:.0f}",
                f"{rate['loaded']:.0f}",
                f"{rate['loaded'] / rate['empty']:.2f}x",
                ">= 0.90x",
            ),
        ]
        for name in r_empty:
            target = "< 5 ms" if name in ("get_run", "history") else "< 50 ms"
            rows.append((name + " (ms)", f"{r_empty[name]:.1f}", f"{r_big[name]:.1f}", "", target))
        print()
        print(f"{'measure':<40} {'empty':>9} {'loaded':>9} {'ratio':>7}  target")
        for r in rows:
            print(f"{r[0]:<40} {r[1]:>9} {r[2]:>9} {r[3]:>7}  {r[4]}")
        per_s = pruned.runs / result["seconds"]
        print()
        print(
            f"prune: {pruned.runs:,} runs and {pruned.events:,} events in "
            f"{result['seconds']:.0f} s ({per_s:,.0f} runs/s, "
            f"{pruned.events / result['seconds']:,.0f} events/s)"
        )
        print(
            f"throughput during the prune: {during:.0f} workflows/s, "
            f"{during / rate['loaded']:.2f}x of without (target >= 0.80x)"
            + ("" if overlapped else "; the prune ended first: use more --runs")
        )
        if claim_max is not None and claim_max_before is not None:
            print(
                f"longest claim statement: {claim_max:.1f} ms during the prune, "
                f"{claim_max_before:.1f} ms in the drain before it"
            )
        if lock_waits_during >= 0:
            print(
                f"lock waits longer than {LOCK_WAIT_MS} ms during the prune "
                f"(log_lock_waits): {lock_waits_during}"
            )
        print(
            f"storage: {events_bytes / n_events:.0f} bytes per event, "
            f"{events_bytes / n_steps:.0f} bytes per step (events and its indexes, "
            f"{n_events:,} events of {n_steps:,} steps)"
        )
        empty.close()
        big.close()
        if args.json:
            raw = {
                "server": server.version,
                "runs": args.runs,
                "active": args.active,
                "throughput": rate,
                "during_prune": during,
                "prune_overlapped": overlapped,
                "reads_empty": r_empty,
                "reads_loaded": r_big,
                "prune": {
                    "runs": pruned.runs,
                    "events": pruned.events,
                    "seconds": result["seconds"],
                },
                "claim_max_ms": claim_max,
                "claim_max_ms_before": claim_max_before,
                "lock_waits_during_prune": lock_waits_during,
                "bytes_per_event": events_bytes / n_events,
                "bytes_per_step": events_bytes / n_steps,
            }
            args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
