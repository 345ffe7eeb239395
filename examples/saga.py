"""pgdurable example: an order saga with parallel steps, a child workflow and compensation.

An order reserves stock and places a hold on the card at the same time (``ctx.all``),
ships through a child workflow (``ctx.child``), then captures the payment. Every step
that changes the world registers how to undo it; when a later step fails for good, the
saga runs those compensations in reverse order and the run ends ``failed``.

Two orders run: one goes through, the other's card is declined at capture time, after
stock, payment hold and shipment were all done, so all three are undone. A saga that
failed has already undone its work: to try the order again, start a new run
(``durable rerun RUN_ID``) rather than ``durable retry``.

    python examples/saga.py

Runs on the embedded PostgreSQL server by default (or on $DURABLE_DSN).
"""

from __future__ import annotations

from typing import Any

import durable

app = durable.App()


class CardDeclined(Exception):
    """The bank refused the payment: retrying will not help."""


# -- forward steps -------------------------------------------------------------------------


@app.step()
def reserve_stock(order_id: str, items: list[str]) -> str:
    return f"stock-{order_id}"


@app.step()
def hold_payment(order_id: str, cents: int) -> str:
    return f"hold-{order_id}"


@app.step(
    retry=durable.RetryPolicy(max_attempts=3, initial_interval=0.1, non_retryable=(CardDeclined,))
)
def capture_payment(hold: str, card: str) -> str:
    if card == "declined-card":
        raise CardDeclined(f"card {card!r} was declined")
    return f"charge-{hold}"


# -- compensations: idempotent, so running one for a step that never happened is harmless -


@app.step()
def release_stock(order_id: str) -> str:
    return f"released stock of {order_id}"


@app.step()
def release_payment(order_id: str) -> str:
    return f"released payment hold of {order_id}"


@app.step()
def cancel_shipment(tracking: str) -> str:
    return f"cancelled shipment {tracking}"


# -- the child workflow: shipping has steps of its own -------------------------------------


@app.step()
def print_label(order_id: str, address: str) -> str:
    return f"label-{order_id}"


@app.step()
def book_courier(label: str) -> str:
    return f"track-{label.removeprefix('label-')}"


@app.workflow()
def shipping(ctx: durable.Context, order_id: str, address: str) -> dict:
    label = yield print_label(order_id, address)
    tracking = yield book_courier(label)
    return {"label": label, "tracking": tracking}


# -- the saga ------------------------------------------------------------------------------


@app.workflow()
def order_saga(
    ctx: durable.Context, order_id: str, items: list[str], cents: int, card: str, address: str
) -> dict:
    # (step, args) pairs to run in reverse order if the saga fails.
    compensations: list[tuple[Any, tuple[Any, ...]]] = []
    try:
        # Registered before the parallel steps run: if one of them fails, ctx.all raises
        # without the other's result, and the idempotent releases cover both cases.
        compensations.append((release_stock, (order_id,)))
        compensations.append((release_payment, (order_id,)))
        stock, hold = yield ctx.all(reserve_stock(order_id, items), hold_payment(order_id, cents))

        ctx.set_status("shipping")
        shipment = yield ctx.child(shipping, order_id, address)
        compensations.append((cancel_shipment, (shipment["tracking"],)))

        ctx.set_status("capturing payment")
        charge = yield capture_payment(hold, card)
    except (durable.StepFailed, durable.ChildFailed):
        ctx.set_status("compensating")
        for step, args in reversed(compensations):
            yield step(*args)  # compensations are durable steps too, retried on failure
        raise  # the run ends `failed`, with the original error
    ctx.set_status("done")
    return {"order": order_id, "stock": stock, "charge": charge, **shipment}


def report(handle: durable.RunHandle, order_id: str) -> None:
    """Print how the saga ended and which compensations ran, in the order they ran."""
    try:
        result = handle.result(timeout=30)
        print(f"order {order_id}: completed, tracking {result['tracking']}, {result['charge']}")
    except durable.RunFailed as exc:
        print(f"order {order_id}: failed: {exc.message}")
    history = app.history(handle.run_id)
    child = next(e.data["child_run_id"] for e in history if e.type == "child_started")
    print(f"  shipping child run: {app.get_run(child).status}")
    undo = {"release_stock", "release_payment", "cancel_shipment"}
    ran = [e.data["name"] for e in history if e.type == "step_completed" and e.data["name"] in undo]
    print(f"  compensations: {', '.join(ran) if ran else 'none'}")


def main() -> int:
    good = app.start(order_saga, "S-1", ["book", "lamp"], 4999, "good-card", "1 Main St")
    bad = app.start(order_saga, "S-2", ["chair"], 12900, "declined-card", "2 High St")
    with app.worker(concurrency=4):
        report(good, "S-1")
        report(bad, "S-2")
    app.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
