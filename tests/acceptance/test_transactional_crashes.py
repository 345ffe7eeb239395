"""A worker SIGKILLed inside a transactional step: the step's write and its result roll
back together, the step runs again elsewhere, and exactly one write is committed."""

from __future__ import annotations

from typing import Any

import tx_app
from acceptance_helpers import Db, create_table, wait_until

KILLS = 10
INSIDE = "SELECT pid FROM public.tx_inside WHERE order_id = %s"


def test_a_worker_killed_inside_a_transactional_step_leaves_one_committed_row(
    dsn: str, make_fleet: Any
) -> None:
    create_table(dsn, tx_app.TABLES)
    app = tx_app.build(dsn)
    db = Db(dsn)
    fleet = make_fleet(dsn, app="tx_app:app", concurrency=KILLS, extra_env={"TX_HANG": "1"})
    runs = []
    try:
        for i in range(KILLS):
            order_id = f"o-{i}"
            runs.append(app.start("order", order_id, run_id=order_id))
            worker = fleet.start()[0]
            wait_until(
                lambda order_id=order_id: db.value(INSIDE, (order_id,)),
                timeout=60,
                what=f"the step of {order_id} to be inside its transaction",
                diagnose=fleet.tails,
            )
            fleet.kill(worker)
        # Nothing the killed workers wrote in their transactions was committed.
        assert db.value("SELECT count(*) FROM public.reservations") == 0
        with app.worker(concurrency=4, lease_seconds=2.0, poll_interval=0.1):
            results = [r.result(timeout=60) for r in runs]
        rows = db.rows("SELECT order_id, id, pid FROM public.reservations ORDER BY order_id")
        assert [r["order_id"] for r in rows] == sorted(f"o-{i}" for i in range(KILLS))
        by_order = {r["order_id"]: r["id"] for r in rows}
        for result in results:
            # the recorded result is the committed row's id: they committed together
            assert result["reservation"] == by_order[result["order"]]
        for run in runs:
            completed = [e for e in app.history(run.run_id) if e.type == "step_completed"]
            assert len(completed) == 1
    finally:
        db.close()
        app.close()
