"""Queues: at most 2 report runs at once, one at a time per customer, urgent ones first,
and a nightly digest that never piles up.

Run it with ``python examples/queues.py``. It starts the runs before any worker is up
(so you can see why they wait), then runs a worker and prints the order in which the
runs started and the most that ran at once.
"""

from __future__ import annotations

import threading
import time

import durable

app = durable.App()

reports = app.queue("reports", concurrency=2, key_concurrency=1)

_lock = threading.Lock()
_running: dict[str, str] = {}  # report name -> customer, while it runs
started: list[str] = []
most_at_once = 0
customer_overlaps = 0


@app.step()
def build_report(customer: str, name: str) -> str:
    global most_at_once, customer_overlaps
    with _lock:
        started.append(name)
        if customer in _running.values():
            customer_overlaps += 1
        _running[name] = customer
        most_at_once = max(most_at_once, len(_running))
    time.sleep(0.2)  # the work
    with _lock:
        del _running[name]
    return f"{name} for {customer}"


@app.workflow(queue="reports")
def report(ctx: durable.Context, customer: str, name: str) -> str:
    return (yield build_report(customer, name))


def main() -> None:
    for run in app.list_runs(workflow="report", limit=1000).runs:
        if run.status not in ("completed", "failed", "cancelled", "timed_out"):
            app.cancel(run.run_id)  # left over from an interrupted earlier demo
    handles = [
        app.start(report, "acme", "acme-monthly", concurrency_key="acme"),
        app.start(report, "acme", "acme-weekly", concurrency_key="acme"),
        app.start(report, "globex", "globex-monthly", concurrency_key="globex"),
        # urgent: goes first
        app.start(report, "initech", "initech-audit", priority=-1, concurrency_key="initech"),
        app.start(report, "globex", "globex-weekly", concurrency_key="globex"),
    ]
    digest = app.start(report, "all", "digest", dedup_key="nightly-digest", priority=5)
    again = app.start(report, "all", "digest", dedup_key="nightly-digest", priority=5)
    print(f"second digest start created a run: {again.created} (same run: {again == digest})")
    print(f"before any worker: {app.get_run(handles[0].run_id).pending_reason}")

    with app.worker(concurrency=8):
        for h in [*handles, digest]:
            h.result(timeout=60)
    # the urgent report and the oldest of priority 0 took the two slots first
    print(f"started first: {' and '.join(sorted(started[:2]))}")
    print(f"most at once: {most_at_once} (queue concurrency {reports.concurrency})")
    print(f"two reports of one customer at once: {customer_overlaps} times")
    (info,) = [q for q in app.queues() if q.name == "reports"]
    print(f"queue reports now: {info.running} running, {info.pending} pending")
    app.close()


if __name__ == "__main__":
    main()
