"""How fast the dashboard answers with a million runs in the table.

Loads ``--runs`` finished runs (default 1,000,000: completed, failed and cancelled, of
five workflows, created over the last 30 days, each with its ``run_started`` and end
event) plus 1,000 waiting ones straight into a fresh database with one INSERT ... SELECT
per table (the quickest way to make a big table; the dashboard reads it through the
App like any other), then times each page and JSON call through the real ASGI
application (Starlette's test client: no network, the same code as under uvicorn),
``--repeat`` times each after a warm-up, and prints the median and p95 next to the
targets: the runs page and the JSON list under 200 ms, the overview under 500 ms.

    python benchmarks/bench_dashboard.py [--runs 1000000] [--repeat 15] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _server import BenchServer, median, percentile

import durable
from durable.dashboard import asgi

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

WORKFLOWS = ["checkout", "refund", "newsletter", "import_csv", "sync_crm"]

_LOAD_RUNS = """
INSERT INTO durable.runs (run_id, workflow, status, created_at, started_at, finished_at,
                          updated_at, last_seq, history_start, error, idempotency_key,
                          search_args)
SELECT 'r' || lpad(i::text, 8, '0'),
       (ARRAY['checkout','refund','newsletter','import_csv','sync_crm'])[1 + i %% 5],
       CASE WHEN i %% 50 = 0 THEN 'failed' WHEN i %% 97 = 0 THEN 'cancelled'
            ELSE 'completed' END,
       t, t, t + make_interval(secs => 0.5 + (i %% 40) * 0.1), t, 2, 1,
       CASE WHEN i %% 50 = 0 THEN '{"error_type": "ValueError", "message": "bad row"}'::jsonb END,
       'order-' || i, jsonb_build_array('order-' || i, 42)::text
FROM generate_series(1, %(n)s) AS i,
     LATERAL (SELECT now() - make_interval(secs => (%(n)s - i) * (2592000.0 / %(n)s))) AS c(t)
"""

_LOAD_EVENTS = """
INSERT INTO durable.events (run_id, seq, type, data, created_at)
SELECT r.run_id, s.seq, s.type, s.data, r.created_at
FROM durable.runs AS r,
     LATERAL (VALUES (1, 'run_started', jsonb_build_object('workflow', r.workflow,
                          'args', (r.search_args)::jsonb, 'seed', 7)),
                     (2, CASE r.status WHEN 'completed' THEN 'run_completed'
                                       WHEN 'failed' THEN 'run_failed'
                                       ELSE 'run_cancelled' END,
                         jsonb_build_object('result', 'ok'))) AS s(seq, type, data)
"""

_LOAD_WAITING = """
INSERT INTO durable.runs (run_id, workflow, status, created_at, started_at, updated_at,
                          last_seq, history_start, search_args)
SELECT 'w' || lpad(i::text, 6, '0'), 'checkout', 'waiting', now(), now(), now(), 1, 1, '[]'
FROM generate_series(1, 1000) AS i;
INSERT INTO durable.events (run_id, seq, type, data, created_at)
SELECT run_id, 1, 'run_started', '{"workflow": "checkout", "args": [], "seed": 1}', now()
FROM durable.runs WHERE status = 'waiting';
ANALYZE durable.runs;
ANALYZE durable.events;
"""


def load(dsn: str, n: int) -> float:
    start = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_LOAD_RUNS, {"n": n})
        conn.execute(_LOAD_EVENTS)
        conn.execute(_LOAD_WAITING)
    return time.monotonic() - start


def timed(http: TestClient, path: str, repeat: int) -> list[float]:
    http.get(path)  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = http.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code}: {response.text[:200]}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--dsn", help="an existing server (default: a throwaway embedded one)")
    args = parser.parse_args()
    with BenchServer(dsn=args.dsn) as server:
        dsn = server.create_database("bench_dashboard")
        app = durable.App(dsn)
        _ = app.store  # migrate
        seconds = load(dsn, args.runs)
        print(f"loaded {args.runs:,} finished runs (+1,000 waiting) in {seconds:.0f} s")
        one = "r" + str(args.runs // 2).zfill(8)
        cases = [
            ("overview page /", "/", 500),
            ("runs page /runs", "/runs", 200),
            ("runs page, page 100", "/runs?offset=5000", 200),
            ("runs page, status=failed", "/runs?status=failed", 200),
            ("runs page, workflow+status", "/runs?workflow=refund&status=completed", 200),
            ("runs page, search", "/runs?search=order-77777", 200),
            ("JSON /api/runs", "/api/runs", 200),
            ("JSON /api/runs?status=waiting", "/api/runs?status=waiting", 200),
            ("run page /runs/{id}", f"/runs/{one}", 200),
            ("JSON /api/runs/{id}/events", f"/api/runs/{one}/events", 200),
        ]
        print(f"{'request':<32} {'median ms':>10} {'p95 ms':>8} {'target':>8}  ok")
        with TestClient(asgi(app), base_url="http://127.0.0.1:8000") as http:
            for label, path, target in cases:
                times = timed(http, path, args.repeat)
                med = median(times)
                flag = "yes" if med < target else "NO"
                print(f"{label:<32} {med:>10.1f} {percentile(times, 95):>8.1f} {target:>8}  {flag}")
        app.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
