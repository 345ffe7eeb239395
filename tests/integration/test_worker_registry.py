"""The live worker registry: a running worker is listed with what it serves, a stopped
one is gone, one that stopped heartbeating drops out after its lease."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import psycopg

import durable

from .waiting import wait_for


def test_a_running_worker_is_listed_and_a_stopped_one_is_not(app: durable.App, worker: Any) -> None:
    @app.workflow(name="parked")
    def parked(ctx: durable.Context) -> Any:
        yield ctx.wait_signal("never")

    assert app.workers() == []
    with worker(app, worker_id="w-registry", lease_seconds=1.5):
        wait_for(lambda: app.workers(), what="the worker's first heartbeat")
        [info] = app.workers()
        assert (info.worker_id, info.host, info.pid) == (
            "w-registry",
            socket.gethostname(),
            os.getpid(),
        )
        assert info.workflows == ["parked"] and info.concurrency == 4
        assert info.last_seen >= info.started_at
    assert app.workers() == []


def test_a_worker_that_stops_heartbeating_drops_out_after_its_lease(
    app: durable.App, dsn: str
) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO durable.workers (worker_id, host, pid, lease_seconds, concurrency,"
            " last_seen) VALUES ('stale', 'h', 1, 5, 4, now() - interval '6 seconds'),"
            " ('fresh', 'h', 2, 5, 4, now() - interval '1 second')"
        )
    assert [w.worker_id for w in app.workers()] == ["fresh"]


def test_durable_workers_lists_them_as_json(app: durable.App, dsn: str, worker: Any) -> None:
    @app.workflow(name="parked")
    def parked(ctx: durable.Context) -> Any:
        yield ctx.wait_signal("never")

    env = {**os.environ, "DURABLE_DSN": dsn}
    with worker(app, worker_id="w-cli"):
        wait_for(lambda: app.workers(), what="the worker's first heartbeat")
        proc = subprocess.run(
            [sys.executable, "-m", "durable", "workers", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert [(w["worker_id"], w["workflows"]) for w in listed] == [("w-cli", ["parked"])]
