"""pgdurable quickstart: a workflow with several steps, a flaky step that succeeds on a
later attempt, and a durable sleep. Runs on the embedded PostgreSQL server by default
(or on $DURABLE_DSN).

    python examples/quickstart.py

Run it twice: the second time the same idempotency key finds the finished run and prints
its result without running anything again.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import durable

app = durable.App()

# A stand-in for a flaky network call: fails twice per order, then succeeds. The counter
# lives in the process, so the retry is visible; the attempts themselves are in the log.
_calls: dict[str, int] = {}


@app.step()
def reserve_stock(order_id: str, items: list[str]) -> dict[str, int]:
    """Reserve every item; returns how many of each were reserved."""
    return {item: 1 for item in items}


@app.step(retry=durable.RetryPolicy(max_attempts=5, initial_interval=0.2, backoff=2.0))
def charge_card(order_id: str, cents: int) -> str:
    """Charge the customer. Flaky on purpose: the first two attempts fail."""
    _calls[order_id] = _calls.get(order_id, 0) + 1
    if _calls[order_id] < 3:
        raise ConnectionError(f"payment gateway timeout (attempt {_calls[order_id]})")
    return f"receipt-{order_id}-{cents}"


@app.step()
def send_confirmation(order_id: str, receipt: str) -> str:
    """Email the customer."""
    return f"emailed confirmation of {receipt}"


@app.workflow()
def place_order(ctx: durable.Context, order_id: str, items: list[str], cents: int) -> dict:
    """Reserve, charge (with retries), wait a moment durably, confirm."""
    ctx.set_status("reserving")
    reserved = yield reserve_stock(order_id, items)
    ctx.set_status("charging")
    receipt = yield charge_card(order_id, cents)
    ctx.set_status("cooling off")
    yield ctx.sleep(timedelta(seconds=1))  # a durable timer: survives restarts
    note = yield send_confirmation(order_id, receipt)
    ctx.set_status("done")
    return {"order": order_id, "reserved": reserved, "receipt": receipt, "note": note}


def main() -> int:
    order_id = sys.argv[1] if len(sys.argv) > 1 else "order-1001"
    run = app.start(place_order, order_id, ["book", "lamp"], 4999, idempotency_key=order_id)
    print(f"started run {run.run_id} of place_order({order_id!r})")
    with app.worker(concurrency=4):
        result = run.result(timeout=60)
    print(f"result: {result}")
    print("history:")
    for event in app.history(run.run_id):
        detail = {k: v for k, v in event.data.items() if k in ("name", "attempt", "message")}
        print(f"  {event.seq:>3}  {event.type:<20} {detail if detail else ''}")
    attempts = [e for e in app.history(run.run_id) if e.type == "step_attempt_failed"]
    print(f"charge_card failed {len(attempts)} time(s) before it succeeded; status: {run.status()}")
    print(f"inspect it with: durable show {run.run_id}")
    app.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
