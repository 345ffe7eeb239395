"""A network partition while a worker is inside a transaction: the server ends the silent
session (idle_in_transaction_session_timeout), so its row lock goes, a client call gets
through in bounded time, and another worker takes the run over after the lease."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import durable

from .tcp_proxy import Proxy
from .waiting import wait_status

FAST = durable.Timeouts(
    statement=10.0, lock=5.0, idle_in_transaction=1.5, keepalive_idle=1, keepalive_interval=1
)


def unix_socket(dsn: str) -> Path:
    params = conninfo_to_dict(dsn)
    host = params.get("host") or parse_qs(urlparse(dsn).query).get("host", [""])[0]
    if not host or not str(host).startswith("/"):
        pytest.skip("needs a server on a unix socket (the embedded one, or .ci/pg15)")
    return Path(str(host)) / f".s.PGSQL.{params.get('port') or 5432}"


@pytest.fixture
def proxy(dsn: str) -> Any:
    p = Proxy(unix_socket(dsn))
    yield p
    p.close()


def through(dsn: str, proxy: Proxy) -> str:
    return make_conninfo(dsn, host="127.0.0.1", port=str(proxy.port))


def test_a_worker_cut_off_inside_a_transaction_frees_its_run(
    dsn: str, proxy: Proxy, worker: Any
) -> None:
    cut_off = durable.App(through(dsn, proxy), timeouts=FAST)
    healthy = durable.App(dsn, timeouts=FAST)
    for app in (cut_off, healthy):

        @app.workflow(name="waits")
        def waits(ctx: durable.Context) -> Any:
            return (yield ctx.wait_signal("go"))

    run = healthy.start("waits")
    # The cut-off side holds the run's row lock inside a transaction, as a worker's inbox
    # sync does, when the network goes.
    with cut_off.store.db.connection() as conn:
        conn.execute("BEGIN")
        conn.execute("SELECT 1 FROM durable.runs WHERE run_id = %s FOR UPDATE", (run.run_id,))
        proxy.partition()
        began = time.monotonic()
        healthy.signal(run.run_id, "go", "through")  # waits for the lock, not forever
        waited = time.monotonic() - began
        with healthy.worker(lease_seconds=2.0, poll_interval=0.2):
            assert run.result(timeout=30) == "through"
        proxy.heal()
        with pytest.raises(psycopg.OperationalError):  # the server ended that session
            conn.execute("SELECT 1")
    assert waited < FAST.lock, f"the signal waited {waited:.1f}s for the cut-off session"
    wait_status(healthy, run.run_id, "completed")
    cut_off.close()
    healthy.close()


def test_a_lock_held_past_lock_timeout_is_one_clear_error(dsn: str) -> None:
    quick = durable.Timeouts(lock=0.5, idle_in_transaction=30.0)
    app = durable.App(dsn, timeouts=quick)

    @app.workflow(name="waits")
    def waits(ctx: durable.Context) -> Any:
        return (yield ctx.wait_signal("go"))

    run = app.start("waits")
    with psycopg.connect(dsn) as holder:
        holder.execute("SELECT 1 FROM durable.runs WHERE run_id = %s FOR UPDATE", (run.run_id,))
        with pytest.raises(durable.StoreError, match="stayed locked past lock_timeout"):
            app.signal(run.run_id, "go")
    app.close()
