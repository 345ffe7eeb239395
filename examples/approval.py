"""pgdurable example: an approval workflow with a timeout and compensation.

Each order is charged first, then waits for a human to approve it. Three endings:

- approved (a signal arrives in time): the order ships;
- no decision before the timeout: the charge is refunded and the order is closed;
- cancelled while waiting: the charge is refunded, then the cancellation goes on and the
  run ends ``cancelled``.

The refund is an ordinary step, so it is as durable as the charge: if the worker crashes
half-way through the compensation, another worker finishes it.

    python examples/approval.py

Runs on the embedded PostgreSQL server by default (or on $DURABLE_DSN).
"""

from __future__ import annotations

import time
from datetime import timedelta

import durable

app = durable.App()


@app.step()
def charge(order_id: str, cents: int) -> str:
    """Take the money (a stand-in for a payment API call)."""
    return f"receipt-{order_id}"


@app.step()
def refund(receipt: str) -> str:
    """Give the money back."""
    return f"refunded {receipt}"


@app.step()
def ship(order_id: str, approved_by: str) -> str:
    """Hand the order to the warehouse."""
    return f"shipped {order_id} (approved by {approved_by})"


@app.workflow()
def approval(ctx: durable.Context, order_id: str, cents: int, wait_seconds: float) -> dict:
    """Charge, wait for approval, then ship; refund on timeout or cancellation."""
    receipt = yield charge(order_id, cents)
    ctx.set_status("awaiting approval")
    try:
        decision = yield ctx.wait_signal("approve", timeout=timedelta(seconds=wait_seconds))
    except durable.WaitTimeout:
        # Nobody decided in time: undo the charge and close the order normally.
        ctx.set_status("refunding")
        note = yield refund(receipt)
        return {"order": order_id, "outcome": "expired", "note": note}
    except durable.Cancelled:
        # Cancelled derives from BaseException: `except Exception` would not catch it.
        # Yielding a step here still works; re-raising ends the run `cancelled`.
        ctx.set_status("refunding")
        yield refund(receipt)
        raise
    ctx.set_status("shipping")
    note = yield ship(order_id, decision["by"])
    return {"order": order_id, "outcome": "approved", "note": note}


def wait_until_waiting(handle: durable.RunHandle, timeout: float = 30.0) -> None:
    """Block until the run has been charged and waits for its approval signal."""
    deadline = time.monotonic() + timeout
    while True:
        info = handle.info()
        if info.status == "waiting" and info.custom_status == "awaiting approval":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {handle.run_id} is still {info.status}")
        time.sleep(0.05)


def main() -> int:
    # Three orders: one will be approved, one cancelled, one left to time out (2 s).
    approved = app.start(approval, "A-100", 2500, 60.0)
    cancelled = app.start(approval, "A-200", 4200, 60.0)
    expired = app.start(approval, "A-300", 990, 2.0)

    # A signal is buffered until the run waits for it, so it may be sent at any time.
    app.signal(approved.run_id, "approve", {"by": "ana"})

    with app.worker(concurrency=4):
        # Cancel only once the charge is recorded, so there is something to refund.
        # (A run cancelled before any worker started it just ends `cancelled`.)
        wait_until_waiting(cancelled)
        app.cancel(cancelled.run_id, reason="customer changed their mind")

        for order, handle in (("A-100", approved), ("A-200", cancelled), ("A-300", expired)):
            try:
                result = handle.result(timeout=30)
                summary = f"{result['outcome']}: {result['note']}"
            except durable.RunCancelled as exc:
                history = app.history(handle.run_id)
                steps = [e.data["name"] for e in history if e.type == "step_completed"]
                summary = f"cancelled ({exc.reason}); steps run: {', '.join(steps)}"
            print(f"order {order}: {summary} [status {handle.status()}]")

    app.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
