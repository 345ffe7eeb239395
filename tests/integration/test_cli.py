"""The ``durable`` command line, run as a real subprocess against real PostgreSQL.

Every command runs through ``python -m durable`` with ``DURABLE_DSN`` set to the test's own
database and this directory on PYTHONPATH, so ``cli_app:app`` names the example app. Runs
are set up and driven in-process (``cli_app.build(dsn)`` and a fast-polling worker) where
that is quicker than a subprocess; what is asserted is what the command line prints and
its exit status.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import psycopg.sql
import pytest

import durable
from durable._embedded import _find_bin_dir
from durable.cli import main

HERE = Path(__file__).resolve().parent
APP = "cli_app:app"


def _load_cli_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_app", HERE / "cli_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli_app = _load_cli_app()


# -- helpers -------------------------------------------------------------------------------


def cli_env(dsn: str | None, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``durable`` subprocess."""
    env = {k: v for k, v in os.environ.items() if k not in ("DURABLE_DSN", "CLI_APP_VARIANT")}
    if dsn is not None:
        env["DURABLE_DSN"] = dsn
    env["PYTHONPATH"] = str(HERE)
    env["DURABLE_HOME"] = str(tmp_path / "durable-home")  # never the repository's ./.durable
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


@pytest.fixture
def cli(dsn: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cli("runs", "--json")`` runs ``python -m durable runs --json`` on the test's database."""

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "durable", *args],
            capture_output=True,
            text=True,
            env={**cli_env(dsn, tmp_path), **(env or {})},
            cwd=tmp_path,
            timeout=timeout,
        )

    return run


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The stderr of a failed command, asserted to be one line and no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture
def app(dsn: str) -> Iterator[durable.App]:
    application = cli_app.build(dsn)
    yield application
    application.close()


def fast_worker(app: durable.App) -> durable.Worker:
    return app.worker(concurrency=2, lease_seconds=5, poll_interval=0.2)


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def count_events(dsn: str, schema: str = "durable") -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            psycopg.sql.SQL("SELECT count(*) FROM {}.events").format(psycopg.sql.Identifier(schema))
        ).fetchone()
    assert row is not None
    return int(row[0])


def completed_run(app: durable.App, workflow: str, *args: Any) -> str:
    """Run ``workflow`` to completion in-process; return its run id."""
    handle = app.start(workflow, *args)
    with fast_worker(app):
        handle.result(timeout=30)
    return handle.run_id


# -- help and entry point ------------------------------------------------------------------

COMMANDS = [
    "worker",
    "start",
    "runs",
    "show",
    "signal",
    "emit",
    "pause",
    "resume",
    "cancel",
    "retry",
    "rerun",
    "fork",
    "prune",
    "replay",
    "db",
    "export",
    "stats",
    "workers",
    "queues",
    "schedules",
]


def test_python_m_durable_help_lists_every_command(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "durable", "--help"],
        capture_output=True,
        text=True,
        env=cli_env(None, tmp_path),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for command in COMMANDS:
        assert f"    {command} " in proc.stdout
    assert "DURABLE_DSN" in proc.stdout and "exit status" in proc.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: durable {command}")
    assert "--dsn" in out and "--schema" in out


def test_usage_error_is_one_line_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--status", "bogus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'bogus'" in err


# -- start and worker ----------------------------------------------------------------------


def test_start_then_worker_subprocess_completes_the_run_and_stops_on_sigterm(
    cli: Callable[..., subprocess.CompletedProcess[str]], dsn: str, tmp_path: Path
) -> None:
    started = cli("start", APP, "greet", '"ana"', "--idempotency-key", "k-1")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    again = cli("start", APP, "greet", '"ana"', "--idempotency-key", "k-1")
    assert again.stdout.strip() == run_id  # the same key starts nothing new

    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "durable",
            "worker",
            APP,
            "--concurrency",
            "2",
            "--poll-interval",
            "0.2",
            "--lease-seconds",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(dsn, tmp_path),
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        shown: dict[str, Any] = {}
        while time.monotonic() < deadline:
            proc = cli("show", run_id, "--json")
            assert proc.returncode == 0, proc.stderr
            shown = json.loads(proc.stdout)
            if shown["status"] == "completed":
                break
            assert worker.poll() is None, worker.communicate()
        assert shown["status"] == "completed", shown
        assert shown["result"] == "hello ana"
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            _, err = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise
    assert worker.returncode == 0, err
    assert "Traceback" not in err


def test_start_wait_prints_the_result_as_json(
    cli: Callable[..., subprocess.CompletedProcess[str]], app: durable.App
) -> None:
    with fast_worker(app):
        proc = cli("start", APP, "chain", "40", "--wait", "--run-id", "chain-40")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == 42
    assert app.get_run("chain-40").status == "completed"


def test_start_wait_of_a_failing_run_exits_1(
    cli: Callable[..., subprocess.CompletedProcess[str]], app: durable.App, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    flag.touch()
    with fast_worker(app):
        proc = cli("start", APP, "fragile", json.dumps(str(flag)), "--wait")
    assert proc.returncode == 1
    assert proc.stdout == ""
    line = one_line_error(proc)
    assert "failed" in line and "says fail" in line


def test_start_wait_prints_the_result_of_a_generator_annotated_workflow(
    cli: Callable[..., subprocess.CompletedProcess[str]], app: durable.App
) -> None:
    with fast_worker(app):
        proc = cli("start", APP, "greet_typed", '"eve"', "--wait")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == "hello eve"


def test_start_of_an_unknown_workflow_or_with_wrong_arguments_exits_2(
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    proc = cli("start", APP, "nosuch")
    assert proc.returncode == 2
    assert "unknown workflow 'nosuch'" in one_line_error(proc)

    missing = cli("start", APP, "chain")
    assert missing.returncode == 2
    assert "missing a required argument: 'n'; it takes (n: int)" in one_line_error(missing)
    extra = cli("start", APP, "approval", "1")
    assert extra.returncode == 2
    assert "too many positional arguments" in one_line_error(extra)


# -- inspecting ----------------------------------------------------------------------------


def test_runs_prints_a_table_and_json(
    cli: Callable[..., subprocess.CompletedProcess[str]], app: durable.App
) -> None:
    done = completed_run(app, "chain", 1)
    pending = app.start("greet", "zoe", idempotency_key="find-me").run_id

    table = cli("runs")
    assert table.returncode == 0, table.stderr
    for expected in (done, pending, "chain", "greet", "completed", "pending", "2 of 2 runs"):
        assert expected in table.stdout

    as_json = cli("runs", "--json")
    assert as_json.returncode == 0, as_json.stderr
    page = json.loads(as_json.stdout)
    assert page["total"] == 2
    assert [r["run_id"] for r in page["runs"]] == [pending, done]  # newest first
    assert page["runs"][1]["status"] == "completed"

    filtered = json.loads(cli("runs", "--workflow", "chain", "--json").stdout)
    assert [r["run_id"] for r in filtered["runs"]] == [done]
    by_status = json.loads(cli("runs", "--status", "pending", "--json").stdout)
    assert [r["run_id"] for r in by_status["runs"]] == [pending]
    searched = json.loads(cli("runs", "--search", "find-me", "--json").stdout)
    assert [r["run_id"] for r in searched["runs"]] == [pending]


def test_show_prints_status_and_history_timeline(
    cli: Callable[..., subprocess.CompletedProcess[str]], app: durable.App
) -> None:
    run_id = completed_run(app, "chain", 5)
    proc = cli("show", run_id)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for expected in (
        run_id,
        "chain",
        "completed",
        "[5]",
        "7",
        "history (4 events)",
        "run_started",
        "step_completed",
        "run_completed",
        "+0.0",
    ):
        assert expected in out, (expected, out)
    # each attempt says how long it ran (from the started_at its event records)
    assert re.search(r"add_one attempt 1 \(\d+ ms\) → 6", out), out

    data = json.loads(cli("show", run_id, "--json").stdout)
    assert data["run_id"] == run_id and data["status"] == "completed" and data["result"] == 7
    assert data["args"] == [5]
    assert [e["type"] for e in data["history"]] == [
        "run_started",
        "step_completed",
        "step_completed",
        "run_completed",
    ]
    assert [e["seq"] for e in data["history"]] == [1, 2, 3, 4]


def test_unknown_run_id_exits_2(cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    for args in (("show", "nope"), ("signal", "nope", "approve"), ("cancel", "nope")):
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "no run with id 'nope'" in one_line_error(proc)


# -- talking to runs -----------------------------------------------------------------------


def test_signal_and_emit_reach_a_waiting_run(
    cli: Callable[..., subprocess.CompletedProcess[str]], app: durable.App
) -> None:
    handle = app.start("approval")
    with fast_worker(app):
        wait_for(lambda: handle.status() == "waiting", what="the run to wait for its signal")
        sent = cli("signal", handle.run_id, "approve", '{"by": "ana"}')
        assert sent.returncode == 0, sent.stderr
        emitted = cli("emit", "go", "[1, 2]")
        assert emitted.returncode == 0, emitted.stderr
        assert "emitted" in emitted.stdout
        assert handle.result(timeout=30) == {"decision": {"by": "ana"}, "go": [1, 2]}

    again = cli("emit", "go", '"late"')
    assert again.returncode == 0 and "emitted before" in again.stdout
    ended = cli("signal", handle.run_id, "approve")
    assert ended.returncode == 2
    assert "not active" in one_line_error(ended)


def test_bad_json_arguments_exit_2_with_one_line(
    cli: Callable[..., subprocess.CompletedProcess[str]], app: durable.App
) -> None:
    proc = cli("start", APP, "chain", "1", "ana")
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert line.startswith("error: argument 2 is not valid JSON (Expecting value: line 1 column 1)")
    assert "quote strings like '\"text\"'" in line
    assert app.list_runs().total == 0  # nothing was started

    run_id = app.start("approval").run_id
    payload = cli("signal", run_id, "approve", "{by: ana}")
    assert payload.returncode == 2
    assert "PAYLOAD_JSON is not valid JSON" in one_line_error(payload)


def test_pause_resume_and_cancel(
    cli: Callable[..., subprocess.CompletedProcess[str]], app: durable.App
) -> None:
    handle = app.start("approval")
    with fast_worker(app):
        wait_for(lambda: handle.status() == "waiting", what="the run to wait")
        assert cli("pause", handle.run_id).returncode == 0
        wait_for(lambda: handle.status() == "paused", what="the run to pause")
        resumed = cli("resume", handle.run_id)
        assert resumed.returncode == 0, resumed.stderr
        wait_for(lambda: handle.status() == "waiting", what="the run to resume")
        cancelled = cli("cancel", handle.run_id, "--reason", "changed my mind")
        assert cancelled.returncode == 0, cancelled.stderr
        with pytest.raises(durable.RunCancelled):
            handle.result(timeout=30)
    assert handle.status() == "cancelled"
    types = [e.type for e in app.history(handle.run_id)]
    assert "run_paused" in types and "run_resumed" in types and types[-1] == "run_cancelled"

    late = cli("pause", handle.run_id)
    assert late.returncode == 2
    one_line_error(late)


def test_retry_continues_a_failed_run_after_the_fix(
    cli: Callable[..., subprocess.CompletedProcess[str]], app: durable.App, tmp_path: Path
) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    handle = app.start("fragile", str(flag))
    with fast_worker(app):
        with pytest.raises(durable.RunFailed):
            handle.result(timeout=30)
        assert json.loads(cli("show", handle.run_id, "--json").stdout)["status"] == "failed"
        flag.unlink()  # the fix
        retried = cli("retry", handle.run_id)
        assert retried.returncode == 0, retried.stderr
        assert handle.result(timeout=30) == "ok"

    not_failed = cli("retry", handle.run_id)
    assert not_failed.returncode == 2
    assert "only failed or blocked runs" in one_line_error(not_failed)


def test_rerun_starts_a_new_run_with_the_same_arguments(
    cli: Callable[..., subprocess.CompletedProcess[str]], app: durable.App
) -> None:
    source = completed_run(app, "greet", "ida")
    proc = cli("rerun", source)
    assert proc.returncode == 0, proc.stderr
    new_id = proc.stdout.strip()
    assert new_id != source
    info = app.get_run(new_id)
    assert info.source_run_id == source and info.args == ["ida"] and info.workflow == "greet"
    with fast_worker(app):
        assert app.handle(new_id).result(timeout=30) == "hello ida"


def test_fork_at_seq_copies_the_log_up_to_there(
    cli: Callable[..., subprocess.CompletedProcess[str]], app: durable.App
) -> None:
    source = completed_run(app, "chain", 10)
    proc = cli("fork", source, "--at", "2")
    assert proc.returncode == 0, proc.stderr
    fork_id = proc.stdout.strip()
    assert app.get_run(fork_id).source_run_id == source
    with fast_worker(app):
        assert app.handle(fork_id).result(timeout=30) == 12
    old, new = app.history(source), app.history(fork_id)
    assert (new[1].type, new[1].data, new[1].created_at) == (
        old[1].type,
        old[1].data,
        old[1].created_at,
    )  # the first step's result was copied, not executed again
    assert new[2].type == "step_completed" and new[2].created_at > old[-1].created_at

    bad = cli("fork", source, "--at", "99")
    assert bad.returncode == 2
    assert "--at 99" in one_line_error(bad)


# -- maintenance ---------------------------------------------------------------------------


def test_prune_deletes_runs_that_ended_before_the_cutoff(
    cli: Callable[..., subprocess.CompletedProcess[str]], app: durable.App, dsn: str
) -> None:
    old = completed_run(app, "chain", 1)
    recent = completed_run(app, "chain", 2)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "UPDATE durable.runs SET finished_at = now() - interval '8 days' WHERE run_id = %s",
            (old,),
        )
    proc = cli("prune", "--older-than", "7d")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("pruned 1 runs, 4 events and 0 signals")
    assert [r.run_id for r in app.list_runs().runs] == [recent]

    counts = cli("prune", "--older-than", "2w", "--json")
    assert json.loads(counts.stdout) == {"runs": 0, "events": 0, "signals": 0}

    bad = cli("prune", "--older-than", "7 days")
    assert bad.returncode == 2
    assert "--older-than must be a number followed by a unit" in one_line_error(bad)


def test_replay_passes_on_unchanged_code_and_fails_on_a_changed_step(
    cli: Callable[..., subprocess.CompletedProcess[str]], dsn: str
) -> None:
    old_app = cli_app.build(dsn, variant="old")
    try:
        run_id = completed_run(old_app, "greet", "ana")
        old_app.start("legacy")  # a workflow the current code no longer registers
    finally:
        old_app.close()

    events_before = count_events(dsn)
    same = cli("replay", APP)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "checked 1 runs, 0 mismatched" in same.stdout
    assert "skipped 1 runs" in same.stdout and "legacy" in same.stdout

    changed = cli("replay", APP, env={"CLI_APP_VARIANT": "b"})
    assert changed.returncode == 1, changed.stdout + changed.stderr
    lines = changed.stdout.strip().splitlines()
    mismatch = [line for line in lines if run_id in line]
    assert len(mismatch) == 1
    assert "greet" in mismatch[0] and "hello" in mismatch[0] and "shout" in mismatch[0]
    assert "cli_app.py:" in mismatch[0]  # the source line of the yield that differs
    assert "checked 1 runs, 1 mismatched" in lines[-1]

    only_chain = cli("replay", APP, "--workflow", "chain", env={"CLI_APP_VARIANT": "b"})
    assert only_chain.returncode == 0 and "checked 0 runs" in only_chain.stdout
    assert count_events(dsn) == events_before  # replaying wrote nothing
    with cli_app.build(dsn) as check:
        assert check.get_run(run_id).status == "completed"


def test_schema_option_selects_another_schema(
    cli: Callable[..., subprocess.CompletedProcess[str]], dsn: str
) -> None:
    started = cli("start", APP, "greet", '"sam"', "--schema", "alt")
    assert started.returncode == 0, started.stderr
    in_alt = json.loads(cli("--schema", "alt", "runs", "--json").stdout)
    assert [r["run_id"] for r in in_alt["runs"]] == [started.stdout.strip()]
    assert json.loads(cli("runs", "--json").stdout)["total"] == 0
    assert cli("show", started.stdout.strip()).returncode == 2  # not in the default schema
    assert count_events(dsn, "alt") == 1


# -- what goes wrong -----------------------------------------------------------------------


def test_module_that_does_not_import_exits_2(
    cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    (tmp_path / "broken_app.py").write_text("import durable\nraise RuntimeError('boom')\n")
    broken = cli("worker", "broken_app:app")
    assert broken.returncode == 2
    line = one_line_error(broken)
    assert "importing 'broken_app' failed: RuntimeError: boom" in line
    assert "broken_app.py:2" in line

    missing = cli("replay", "no_such_module:app")
    assert missing.returncode == 2
    assert "cannot import module 'no_such_module'" in one_line_error(missing)

    not_an_app = cli("start", "cli_app:build", "greet", '"x"')
    assert not_an_app.returncode == 2
    assert "not a durable.App" in one_line_error(not_an_app)


def test_unreachable_database_or_malformed_dsn_exits_2_with_one_line(
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    bad = "postgresql://nobody@127.0.0.1:1/x"
    for args in (("runs", "--dsn", bad), ("--dsn", bad, "worker", APP)):
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "cannot reach PostgreSQL" in one_line_error(proc)

    malformed = cli("runs", env={"DURABLE_DSN": "not a dsn"})
    assert malformed.returncode == 2
    assert "DURABLE_DSN is not a valid PostgreSQL connection string" in one_line_error(malformed)


# -- the embedded server -------------------------------------------------------------------


def test_db_status_and_url_without_a_server(
    cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    home = tmp_path / "nowhere"
    status = cli("db", "status", "--home", str(home))
    assert status.returncode == 0, status.stderr
    assert "running  no" in status.stdout and str(home) in status.stdout
    url = cli("db", "url", "--home", str(home))
    assert url.returncode == 0 and url.stdout.startswith("postgresql://postgres@/postgres?host=")
    as_json = json.loads(cli("db", "--home", str(home), "--json").stdout)
    assert as_json["running"] is False and as_json["pid"] is None


@pytest.mark.skipif(_find_bin_dir() is None, reason="needs the embedded server")
def test_db_start_status_stop(tmp_path: Path) -> None:
    # Not under pytest's tmp root: the server's system user must be able to traverse it.
    home = Path(tempfile.mkdtemp(prefix="pgdurable-cli-")) / "home"

    def db(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "durable", "db", *args],
            capture_output=True,
            text=True,
            env=cli_env(None, tmp_path, DURABLE_HOME=str(home)),
            cwd=tmp_path,
            timeout=120,
        )

    try:
        started = db("start")
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        status = db("status", "--json")
        data = json.loads(status.stdout)
        assert data["running"] is True and isinstance(data["pid"], int)
        assert db("url").stdout.strip() == url
        stopped = db("stop")
        assert stopped.returncode == 0 and stopped.stdout.strip() == "stopped"
        assert "running  no" in db("status").stdout
    finally:
        from durable._embedded import embedded_stop

        embedded_stop(home)
        shutil.rmtree(home.parent, ignore_errors=True)
