"""An asyncio web service on pgdurable: orders that are written and started in one
transaction, stock reserved exactly once, and an async call to another HTTP service.

Run it with ``python examples/fastapi_orders.py`` (it needs ``pip install fastapi
uvicorn httpx``). It serves the API below on a free local port, runs a worker in the
same process, places a few orders through HTTP as a client would, prints what happened,
and stops. As a real service you would run ``uvicorn`` on ``api`` and ``durable worker
examples.fastapi_orders:app`` in their own processes.

- ``POST /orders`` inserts the order row *and* starts its workflow in the same
  transaction (``app.aio.start(..., conn=conn)``): if the insert fails (a duplicate
  order id) there is no run, and if the run cannot be created there is no order.
- ``reserve_stock`` is a transactional step (``@app.transaction()``): its UPDATE of the
  stock commits together with its recorded result, so a worker crash can never reserve
  twice or lose a reservation.
- ``notify_warehouse`` is an async step: it awaits an HTTP call (to a fake warehouse
  service served by the same process here) on the worker's event loop.
- ``GET /orders/{id}`` reads the order row and its run's status, on the async client.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import uvicorn
from fastapi import FastAPI, HTTPException
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

import durable

app = durable.App()

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS shop;
CREATE TABLE IF NOT EXISTS shop.orders (
    id      text PRIMARY KEY,
    item    text NOT NULL,
    qty     int  NOT NULL CHECK (qty > 0),
    state   text NOT NULL DEFAULT 'placed',
    run_id  text
);
CREATE TABLE IF NOT EXISTS shop.stock (
    item       text PRIMARY KEY,
    available  int  NOT NULL CHECK (available >= 0)
);
"""

WAREHOUSE_URL = "http://127.0.0.1:{port}/warehouse/tickets"  # the port is chosen at start
_port: dict[str, int] = {}


class OutOfStock(Exception):
    """Not enough of the item left: retrying will not help."""


# -- steps and the workflow -------------------------------------------------------------


@app.transaction(retry=durable.RetryPolicy(non_retryable=(OutOfStock,)))
def reserve_stock(conn: psycopg.Connection[Any], order_id: str, item: str, qty: int) -> int:
    """Take ``qty`` of ``item`` from the stock, in the transaction that records the
    step: exactly once, whatever crashes."""
    row = conn.execute(
        "UPDATE shop.stock SET available = available - %s "
        "WHERE item = %s AND available >= %s RETURNING available",
        (qty, item, qty),
    ).fetchone()
    if row is None:
        raise OutOfStock(f"not enough {item} for order {order_id}")
    conn.execute("UPDATE shop.orders SET state = 'reserved' WHERE id = %s", (order_id,))
    return int(row[0])


@app.transaction()
def set_state(conn: psycopg.Connection[Any], order_id: str, state: str) -> None:
    conn.execute("UPDATE shop.orders SET state = %s WHERE id = %s", (state, order_id))


@app.step(retry=durable.RetryPolicy(max_attempts=5, initial_interval=0.2), timeout=10)
async def notify_warehouse(order_id: str, item: str, qty: int) -> str:
    """Ask the warehouse service for a shipping ticket (an async HTTP call)."""
    url = WAREHOUSE_URL.format(port=_port["api"])
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(url, json={"order": order_id, "item": item, "qty": qty})
        response.raise_for_status()
        return str(response.json()["ticket"])


@app.workflow()
def fulfil_order(ctx: durable.Context, order_id: str, item: str, qty: int) -> dict[str, Any]:
    try:
        left = yield reserve_stock(order_id, item, qty)
    except durable.StepFailed as exc:
        yield set_state(order_id, "rejected")
        return {"order": order_id, "state": "rejected", "reason": exc.message}
    ticket = yield notify_warehouse(order_id, item, qty)
    yield set_state(order_id, "shipped")
    return {"order": order_id, "state": "shipped", "ticket": ticket, "stock_left": left}


# -- the HTTP API -------------------------------------------------------------------------

pool: AsyncConnectionPool[Any] | None = None


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """The service's own connection pool, and the async client's, for its lifetime."""
    global pool
    pool = AsyncConnectionPool(app.dsn, min_size=1, max_size=4, open=False)
    await pool.open()
    try:
        yield
    finally:
        await pool.close()
        await app.aio.aclose()


api = FastAPI(title="orders", lifespan=lifespan)


class NewOrder(BaseModel):
    id: str
    item: str
    qty: int


@api.post("/orders", status_code=201)
async def place_order(order: NewOrder) -> dict[str, Any]:
    assert pool is not None
    async with pool.connection() as conn:
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO shop.orders (id, item, qty) VALUES (%s, %s, %s)",
                    (order.id, order.item, order.qty),
                )
                run = await app.aio.start(fulfil_order, order.id, order.item, order.qty, conn=conn)
                await conn.execute(
                    "UPDATE shop.orders SET run_id = %s WHERE id = %s", (run.run_id, order.id)
                )
        except psycopg.errors.UniqueViolation:
            raise HTTPException(409, f"order {order.id} exists already") from None
    return {"order": order.id, "run_id": run.run_id}


@api.get("/orders/{order_id}")
async def order_status(order_id: str) -> dict[str, Any]:
    assert pool is not None
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT state, run_id FROM shop.orders WHERE id = %s", (order_id,))
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, f"no order {order_id}")
    info = await app.aio.get_run(row[1])
    return {
        "order": order_id,
        "state": row[0],
        "run_id": info.run_id,
        "run": info.status,
        "result": info.result,
    }


_tickets = iter(range(1, 1_000_000))


@api.post("/warehouse/tickets")
async def warehouse_ticket(body: dict[str, Any]) -> dict[str, str]:
    """The fake warehouse service the async step calls."""
    await asyncio.sleep(0.05)  # it takes a moment, as remote services do
    return {"ticket": f"WH-{next(_tickets)}-{body['order']}"}


# -- the demonstration --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    with psycopg.connect(app.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS shop.orders")  # the demo starts afresh
        conn.execute(SCHEMA_SQL)
        conn.execute(
            "INSERT INTO shop.stock VALUES ('lamp', 3) "
            "ON CONFLICT (item) DO UPDATE SET available = 3"
        )
    for run in app.list_runs(workflow="fulfil_order", limit=1000).runs:
        if run.status not in ("completed", "failed", "cancelled", "timed_out"):
            app.cancel(run.run_id)  # a run left over from an interrupted earlier demo

    _port["api"] = port = _free_port()
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    try:
        with app.worker(concurrency=8), httpx.Client(base_url=base, timeout=10) as http:
            for order in ({"id": "A-1", "qty": 2}, {"id": "A-2", "qty": 5}):
                reply = http.post("/orders", json={**order, "item": "lamp"})
                print(f"POST /orders {order['id']}: {reply.status_code}")
            again = http.post("/orders", json={"id": "A-1", "item": "lamp", "qty": 1})
            print(f"POST /orders A-1 again: {again.status_code} {again.json()['detail']}")
            for order_id in ("A-1", "A-2"):
                app.handle(http.get(f"/orders/{order_id}").json()["run_id"]).result(timeout=30)
                status = http.get(f"/orders/{order_id}").json()
                result = status["result"]
                detail = result.get("ticket") or result.get("reason")
                print(f"order {order_id}: {status['state']} (run {status['run']}): {detail}")
        with psycopg.connect(app.dsn) as conn:
            runs = conn.execute("SELECT count(run_id) FROM shop.orders").fetchone()
            left = conn.execute("SELECT available FROM shop.stock WHERE item = 'lamp'").fetchone()
        print(
            f"orders with a run: {runs[0] if runs else '?'}; lamps left: {left[0] if left else '?'}"
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.close()


if __name__ == "__main__":
    main()
