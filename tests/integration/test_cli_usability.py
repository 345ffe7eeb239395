"""The ``durable`` command line on faults and bad input: bounded options, tables that fit
the terminal, run id prefixes, read-only commands that never start a server, what a
waiting run waits for, commands that say what they did (and did not do), ``stats``.

Like test_cli.py, commands run as ``python -m durable`` subprocesses on the test's own
database; the helpers come from there. A few checks of pure rendering call the CLI's
renderer directly.
"""

# ruff: noqa: F811  (the fixtures imported from test_cli are parameters of the tests)

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from rich.console import Console

import durable
import durable.embedded
from durable._embedded import _find_bin_dir
from durable.cli import main
from durable.cli._common import mask_dsn
from durable.cli._render import runs_table, short_ids, summarize, waiting_for
from durable.store._sql import load_queries

from .test_cli import (  # noqa: F401  (cli and app are fixtures)
    APP,
    app,
    cli,
    cli_env,
    completed_run,
    fast_worker,
    one_line_error,
    wait_for,
)

Cli = Callable[..., subprocess.CompletedProcess[str]]
STATUS_WORDS = [str(s) for s in durable.RunStatus]


def usage_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    return one_line_error(proc)


def with_tty(
    args: list[str], env: dict[str, str], cwd: Path, *, stdout_tty: bool = False
) -> tuple[int, str, str]:
    """Run ``python -m durable ARGS`` with stderr (and, if asked, stdout) on a terminal;
    return (exit status, stdout, stderr)."""
    err_main, err_child = pty.openpty()
    out_main, out_child = pty.openpty() if stdout_tty else (None, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "durable", *args],
        stdout=out_child if out_child is not None else subprocess.PIPE,
        stderr=err_child,
        env=env,
        cwd=cwd,
        text=True,
    )
    os.close(err_child)
    if out_child is not None:
        os.close(out_child)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # drain both while it runs
        err = pool.submit(_drain, err_main)
        if out_main is not None:
            out = pool.submit(_drain, out_main)
        else:
            assert proc.stdout is not None
            out = pool.submit(proc.stdout.read)
        status = proc.wait(timeout=60)
        return status, out.result(timeout=60), err.result(timeout=60)


def _drain(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child's side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    text = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # drop colours


# -- an app with every kind of wait --------------------------------------------------------


@pytest.fixture
def waits(dsn: str) -> Iterator[durable.App]:
    """Workflows that stop at each kind of wait (driven in-process)."""
    application = durable.App(dsn)

    retry_later = durable.RetryPolicy(max_attempts=3, initial_interval=3600, max_interval=3600)

    @application.step(name="charge", retry=retry_later)
    def charge() -> str:
        raise RuntimeError("card declined")

    @application.workflow(name="timed_signal")
    def timed_signal(ctx: durable.Context) -> Any:
        return (yield ctx.wait_signal("approve", timeout=timedelta(days=2)))

    @application.workflow(name="signal")
    def signal(ctx: durable.Context) -> Any:
        return (yield ctx.wait_signal("approve"))

    @application.workflow(name="event")
    def event(ctx: durable.Context) -> Any:
        return (yield ctx.wait_event("go-live"))

    @application.workflow(name="sleeper")
    def sleeper(ctx: durable.Context) -> Any:
        yield ctx.sleep(timedelta(hours=5))

    @application.workflow(name="pay")
    def pay(ctx: durable.Context) -> Any:
        return (yield charge())

    @application.workflow(name="parent")
    def parent(ctx: durable.Context) -> Any:
        return (yield ctx.child(signal))

    @application.workflow(name="slow", timeout=0.3)
    def slow(ctx: durable.Context) -> Any:
        yield ctx.wait_signal("never")

    @application.workflow(name="done")
    def done(ctx: durable.Context) -> Any:
        ctx.set_status("all done and dusted")
        return 1
        yield  # a generator

    yield application
    application.close()


def settle(app: durable.App, run_ids: list[str], statuses: set[str]) -> None:
    for run_id in run_ids:
        wait_for(lambda r=run_id: app.get_run(r).status in statuses, what=f"{run_id} settles")


# -- 1. numbers and durations are bounded ---------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["prune", "--older-than", "99999999999d"], "at most 36500d"),
        (["prune", "--older-than", "800000d"], "at most 36500d"),
        (["prune", "--older-than", "999999999999w"], "at most 36500d"),
        (
            ["runs", "--limit", "99999999999999999999"],
            "--limit: expected a number of at most 10000",
        ),
        (["runs", "--offset", "99999999999999999999"], "--offset: expected a number of at most"),
        (["fork", "abcd", "--at", "99999999999"], "--at: expected a number of at most 2147483647"),
        (["prune", "--older-than", "1d", "--batch", "10000000000"], "--batch"),
        (["replay", APP, "--limit", "99999999999999999999"], "--limit"),
        (["worker", APP, "--concurrency", "100000"], "--concurrency"),
        (["worker", APP, "--lease-seconds", "inf"], "finite, positive"),
        (["worker", APP, "--lease-seconds", "nan"], "finite, positive"),
        (["worker", APP, "--poll-interval", "1e400"], "--poll-interval"),
        (["worker", APP, "--poll-interval", "86400"], "at most 3600 seconds (1 hour)"),
        (["start", APP, "greet", '"x"', "--wait", "--timeout", "1e300"], "(365 days)"),
        (["start", APP, "greet", '"x"', "--wait", "--timeout", "inf"], "finite, positive"),
    ],
)
def test_huge_or_infinite_numbers_are_one_line_usage_errors(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert expected in err


def test_the_largest_age_and_bounds_are_accepted(cli: Cli) -> None:
    proc = cli("prune", "--older-than", "36500d", "--batch", "100000", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"runs": 0, "events": 0, "signals": 0}
    page = cli("runs", "--limit", "10000", "--offset", str(2**31 - 1), "--json")
    assert page.returncode == 0, page.stderr
    assert json.loads(page.stdout) == {"runs": [], "total": 0}


# -- 2. the runs table fits the terminal ----------------------------------------------------


def fake_runs(workflow: str = "order_fulfilment") -> durable.RunPage:
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    runs = [
        durable.RunInfo(
            run_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"run-{i}")),
            workflow=workflow,
            status=status,
            custom_status="waiting for approval from the finance team",
            created_at=now,
            finished_at=now + timedelta(seconds=3) if i % 2 else None,
        )
        for i, status in enumerate(STATUS_WORDS)
    ]
    return durable.RunPage(runs=runs, total=len(runs))


def render(table: Any, width: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text().splitlines()


@pytest.mark.parametrize("width", [60, 80, 100, 200])
def test_runs_table_never_cuts_a_status_and_fits_the_width(width: int) -> None:
    for workflow in ("pay", "order_fulfilment", "a_very_long_module_name.process_the_order"):
        page = fake_runs(workflow)
        lines = render(runs_table(page, width=width), width)
        assert all(len(line.rstrip()) <= width for line in lines), "\n".join(lines)
        body = lines[2 : 2 + len(page.runs)]
        for line, run in zip(body, page.runs, strict=True):
            assert re.search(rf"\s{run.status}\s", line + " "), (run.status, line)
        if width >= 80:
            assert "waiting for" in "\n".join(body)  # the custom status stays


def test_short_ids_are_unique_prefixes_and_children_keep_their_position() -> None:
    parent = "3f2a9c1e-4b7d-4e0f-9a31-000000000001"
    ids = [parent, f"{parent}:1", "3f2a9c1e-4b7d-4e0f-9a31-000000000002", "order-42"]
    assert short_ids(ids) == {
        parent: "3f2a9c1e-4b7d-4e0f-9a31-000000000001",
        f"{parent}:1": "3f2a9c1e-4b7d-4e0f-9a31-000000000001:1",
        "3f2a9c1e-4b7d-4e0f-9a31-000000000002": "3f2a9c1e-4b7d-4e0f-9a31-000000000002",
        "order-42": "order-42",
    }
    other = "9d0c6b2a-0000-4000-8000-000000000000"
    assert short_ids([parent, f"{parent}:1", other]) == {
        parent: "3f2a9c1e",
        f"{parent}:1": "3f2a9c1e:1",
        other: "9d0c6b2a",
    }


def test_runs_at_80_columns_shows_every_status_unabridged_with_the_custom_status(
    cli: Cli, waits: durable.App, app: durable.App, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    flag.touch()
    ids = {
        "failed": app.start("fragile", str(flag)).run_id,
        "paused": app.start("approval").run_id,
        "cancelled": app.start("approval").run_id,
        "waiting": app.start("approval").run_id,
        "completed": waits.start("done").run_id,
        "timed_out": waits.start("slow").run_id,
    }
    app.pause(ids["paused"])
    app.cancel(ids["cancelled"])
    with fast_worker(app), fast_worker(waits):
        settle(app, [ids["waiting"], ids["failed"]], {"waiting", "failed"})
        settle(waits, [ids["completed"], ids["timed_out"]], {"completed", "timed_out"})
    ids["pending"] = app.start("greet", "later").run_id  # no worker runs now
    for run_id in ids.values():
        assert app.get_run(run_id).status in ids  # every status it was meant to reach
    for columns in ("80", "100", "200"):
        proc = cli("runs", env={"COLUMNS": columns})
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert all(len(line.rstrip()) <= int(columns) for line in lines), proc.stdout
        for status, run_id in ids.items():
            row = [line for line in lines if line.startswith(run_id[:8])]
            assert len(row) == 1, (status, proc.stdout)
            assert re.search(rf"\s{status}\s", row[0] + " "), (status, row[0])
        assert "waiting for approval" in proc.stdout and "all done and dusted" in proc.stdout
    narrow = cli("runs", env={"COLUMNS": "80"}).stdout
    assert "run ids shortened" in narrow
    short = narrow.splitlines()[2].split()[0]
    assert len(short) == 8
    shown = cli("show", short, "--json")  # a short id from the table names its run
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["run_id"] in ids.values()
    full = json.loads(cli("runs", "--json", env={"COLUMNS": "80"}).stdout)
    assert {r["run_id"] for r in full["runs"]} == set(ids.values())  # --json: full ids


# -- 3. a unique prefix names a run ---------------------------------------------------------


def test_resolve_run_id_takes_an_exact_id_or_a_unique_prefix(app: durable.App) -> None:
    for run_id in ("abcd-1", "abcd-2", "abcd", "a%bc-1", "axbc-1", "famX-1", "famX-1:1"):
        app.start("greet", "x", run_id=run_id)
    assert app.resolve_run_id("abcd") == "abcd"  # the exact id wins over the prefix
    assert app.resolve_run_id("abcd-2") == "abcd-2"
    assert app.resolve_run_id("a%bc") == "a%bc-1"  # LIKE wildcards are literal
    assert app.resolve_run_id("axbc") == "axbc-1"
    assert app.resolve_run_id("famX") == "famX-1"  # a run and its child: the run
    with pytest.raises(durable.RunNotFound):
        app.resolve_run_id("a_bc")
    with pytest.raises(durable.RunNotFound):
        app.resolve_run_id("zzzz")
    with pytest.raises(durable.RunNotFound):
        app.resolve_run_id("abc")  # a prefix needs 4 characters
    with pytest.raises(durable.AmbiguousRunId) as info:
        app.resolve_run_id("abcd-")
    assert info.value.candidates == ["abcd-1", "abcd-2"] and not info.value.more
    assert "abcd-1, abcd-2" in str(info.value)
    for i in range(7):
        app.start("greet", "x", run_id=f"many-{i}")
    with pytest.raises(durable.AmbiguousRunId) as many:
        app.resolve_run_id("many")
    assert len(many.value.candidates) == 5 and many.value.more


def test_a_prefix_of_a_parent_names_the_parent_and_prefix_colon_pos_its_child(
    waits: durable.App,
) -> None:
    parent = waits.start("parent").run_id
    with fast_worker(waits):
        settle(waits, [parent, f"{parent}:1"], {"waiting"})
    assert waits.resolve_run_id(parent[:8]) == parent  # not ambiguous with its child
    assert waits.resolve_run_id(f"{parent[:8]}:1") == f"{parent}:1"
    with pytest.raises(durable.RunNotFound):
        waits.resolve_run_id(f"{parent[:8]}:9")


def test_every_command_that_takes_a_run_id_takes_a_unique_prefix(
    cli: Cli, app: durable.App, tmp_path: Path
) -> None:
    done = completed_run(app, "chain", 1)
    waiting = app.start("approval", run_id="wait-a-001").run_id
    other = app.start("approval", run_id="wait-b-001").run_id
    flag = tmp_path / "fail"
    flag.touch()
    failing = app.start("fragile", str(flag), run_id="fail-0001").run_id
    with fast_worker(app):
        settle(app, [failing, waiting, other], {"failed", "waiting"})
    flag.unlink()
    prefix = done[:8]
    assert json.loads(cli("show", prefix, "--json").stdout)["run_id"] == done
    sent = cli("signal", "wait-a", "approve")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip() == "signal 'approve' sent to run wait-a-001"
    for command in ("pause", "resume", "cancel"):
        proc = cli(command, "wait-b")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("run wait-b-001")
    retried = cli("retry", "fail-00")
    assert retried.returncode == 0 and "run fail-0001" in retried.stdout, retried.stderr
    rerun = cli("rerun", prefix)
    assert rerun.returncode == 0, rerun.stderr
    assert app.get_run(rerun.stdout.strip()).source_run_id == done
    forked = cli("fork", prefix, "--at", "2")
    assert forked.returncode == 0, forked.stderr
    assert app.get_run(forked.stdout.strip()).source_run_id == done

    ambiguous = cli("show", "wait-")
    line = usage_error(ambiguous)
    assert "ambiguous" in line and "wait-a-001, wait-b-001" in line
    assert usage_error(cli("cancel", "wait-")).startswith("error: run id prefix")
    assert "at least 4 characters" in usage_error(cli("show", "wai"))


@pytest.mark.parametrize("prefix", ["3f2a9c1e", "3f2a9c1e-4b7d"])
def test_the_prefix_lookup_uses_the_primary_key_under_the_c_collation(
    dsn: str, prefix: str
) -> None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT collation_name FROM information_schema.columns "
            "WHERE table_schema = 'durable' AND table_name = 'runs' AND column_name = 'run_id'"
        ).fetchone()
        collate = conn.execute(
            "SELECT datcollate FROM pg_database WHERE datname = current_database()"
        )
        db_collation = collate.fetchone()
        column = row[0] if row else None
        if (column or (db_collation[0] if db_collation else "")) not in ("C", "POSIX"):
            pytest.skip("the database's collation is not C: LIKE needs text_pattern_ops there")
        conn.execute("SET search_path TO durable")
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute(
            "EXPLAIN " + load_queries()["find_run_ids"],
            {"pattern": prefix + "%", "limit": 2},
        ).fetchall()
    text = "\n".join(str(r[0]) for r in plan)
    assert "runs_pkey" in text and "Seq Scan" not in text, text


# -- 4. read-only commands never start a server ---------------------------------------------


@pytest.mark.parametrize("argv", [["runs"], ["show", "abcd1234"], ["stats"], ["runs", "--json"]])
def test_read_only_commands_do_not_create_an_embedded_server(
    argv: list[str], tmp_path: Path
) -> None:
    home = tmp_path / "elsewhere" / ".durable"
    env = cli_env(None, tmp_path, DURABLE_HOME=str(home))
    proc = subprocess.run(
        [sys.executable, "-m", "durable", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    line = usage_error(proc)
    assert f"no embedded server in {home}" in line
    installed = durable.embedded.embedded_status(home)["version"] is not None
    create = "`durable db start` creates one there" if installed else "pgdurable[embedded]"
    for hint in ("--dsn", "DURABLE_DSN", "DURABLE_HOME", create):
        assert hint in line
    assert not home.exists()  # nothing was created


def test_read_only_commands_do_not_start_a_stopped_embedded_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "pgdata").mkdir(parents=True)
    (home / "pgdata" / "PG_VERSION").write_text("18\n")  # initialised, not running
    env = cli_env(None, tmp_path, DURABLE_HOME=str(home))
    for argv in (["runs"], ["show", "abcd"], ["stats", "--json"]):
        proc = subprocess.run(
            [sys.executable, "-m", "durable", *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
        line = usage_error(proc)
        assert f"the embedded server in {home} is not running" in line
        assert "durable db start" in line
    assert not (home / "pgdata" / "postmaster.pid").exists()


def test_commands_naming_a_run_do_not_create_an_embedded_server(tmp_path: Path) -> None:
    home = tmp_path / "nowhere"
    env = cli_env(None, tmp_path, DURABLE_HOME=str(home))
    for argv in (["signal", "abcd", "go"], ["cancel", "abcd"], ["prune", "--older-than", "1d"]):
        proc = subprocess.run(
            [sys.executable, "-m", "durable", *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
        assert f"no embedded server in {home}" in usage_error(proc)
    assert not home.exists()


def test_runs_and_show_name_the_database_on_a_terminal_with_the_password_masked(
    dsn: str, app: durable.App, tmp_path: Path
) -> None:
    run_id = completed_run(app, "greet", "ana")
    env = cli_env(dsn, tmp_path)
    for argv in (["runs"], ["show", run_id], ["stats"]):
        status, out, err = with_tty(argv, env, tmp_path, stdout_tty=True)
        assert status == 0, err
        assert run_id in out or "greet" in out
        assert err.strip().splitlines() == [f"database: {mask_dsn(dsn)}"]
    status, _, err = with_tty(["--schema", "other", "runs"], env, tmp_path, stdout_tty=True)
    assert status == 0 and err.strip().endswith(", schema other"), err
    status, out, err = with_tty(["runs", "--json"], env, tmp_path, stdout_tty=True)
    assert status == 0 and err == "" and json.loads(out)["total"] == 1
    status, out, err = with_tty(["runs"], env, tmp_path)  # `durable runs | less`
    assert status == 0 and err == "" and run_id in out
    piped = subprocess.run(
        [sys.executable, "-m", "durable", "runs"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert piped.returncode == 0 and piped.stderr == ""  # a script's stderr stays quiet


def test_mask_dsn_hides_passwords_in_every_form() -> None:
    assert mask_dsn("postgresql://ana:s3cr@t@db:5432/app") == "postgresql://ana:***@db:5432/app"
    assert mask_dsn("postgres://ana@db/app") == "postgres://ana@db/app"
    assert mask_dsn("postgresql://db/app?user=a&password=x&sslmode=on") == (
        "postgresql://db/app?user=a&password=***&sslmode=on"
    )
    assert mask_dsn("host=db password='a b' user=x") == "host=db password=*** user=x"
    assert mask_dsn("host=db password=abc") == "host=db password=***"


# -- 5. what a waiting run waits for --------------------------------------------------------


def test_show_says_what_each_kind_of_waiting_run_waits_for(cli: Cli, waits: durable.App) -> None:
    runs = {name: waits.start(name).run_id for name in ("signal", "event", "sleeper", "pay")}
    runs["timed_signal"] = waits.start("timed_signal").run_id
    runs["parent"] = waits.start("parent").run_id
    with fast_worker(waits):
        settle(waits, list(runs.values()), {"waiting"})
        wait_for(
            lambda: any(e.type == "step_attempt_failed" for e in waits.history(runs["pay"])),
            what="the first attempt of charge to fail",
        )
    expected = {
        "signal": "signal 'approve' (no timeout)",
        "event": "event 'go-live' (no timeout)",
        "sleeper": "timer until ",
        "pay": "step 'charge' retry at ",
        # "signal 'approve' (until ...)" once the worker records the name of a timed wait
        "timed_signal": "until ",
        "parent": f"child run {runs['parent']}:1 (signal)",
    }
    for name, run_id in runs.items():
        proc = cli("show", run_id, env={"COLUMNS": "100"})
        assert proc.returncode == 0, proc.stderr
        line = next(line for line in proc.stdout.splitlines() if line.startswith("waiting for"))
        assert expected[name] in line, (name, proc.stdout)
        assert "{" not in line  # no raw JSON
    fire = datetime.now(UTC) + timedelta(days=2)
    timeline = cli("show", runs["timed_signal"]).stdout
    assert fire.astimezone().strftime("%Y-%m-%d") in timeline and "(in 2d00h)" in timeline
    plain = cli("show", runs["signal"]).stdout
    assert "wait_started" in plain and "#1 waiting for signal 'approve' (no timeout)" in plain


def test_a_wait_with_a_timeout_is_named_when_the_log_names_it() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    fire = now + timedelta(days=2)
    history = [
        durable.Event(seq=1, type="run_started", created_at=now, data={"workflow": "w"}),
        durable.Event(
            seq=2,
            type="timer_started",
            created_at=now,
            data={"pos": 1, "fire_at": fire.isoformat(), "kind": "signal", "name": "approve"},
        ),
    ]
    run = durable.RunInfo(run_id="r", workflow="w", status="waiting", created_at=now)
    local = fire.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert waiting_for(run, history) == [f"signal 'approve' (until {local})"]
    assert summarize(history[1]) == f"#1 waiting for signal 'approve' until {local} (in 2d00h)"
    resolved = durable.Event(seq=3, type="signal_received", created_at=now, data={"pos": 1})
    assert waiting_for(run, [*history, resolved]) == []
    long_ago = now - timedelta(days=3)
    overdue = durable.Event(
        seq=2,
        type="timer_started",
        created_at=long_ago,
        data={"pos": 1, "fire_at": "2000-01-01T00:00:00+00:00"},
    )
    assert waiting_for(run, [history[0], overdue])[0].endswith(
        "(overdue: is a worker running?) (a sleep or a wait's timeout)"
    )


EVENT_DATA: dict[str, dict[str, Any]] = {
    "run_started": {"workflow": "order", "args": ["o-1"], "seed": 7},
    "step_completed": {"pos": 1, "name": "charge", "attempt": 1, "result": "r-1"},
    "step_attempt_failed": {
        "pos": 1,
        "name": "charge",
        "attempt": 1,
        "error_type": "ValueError",
        "message": "declined",
        "retry_at": "2026-12-01T10:00:00+00:00",
    },
    "step_failed": {
        "pos": 1,
        "name": "charge",
        "attempts": 3,
        "error_type": "ValueError",
        "message": "declined",
    },
    "timer_started": {"pos": 2, "fire_at": "2026-12-03T10:00:00+00:00"},
    "wait_started": {"pos": 2, "kind": "signal", "name": "approve"},
    "timer_fired": {"pos": 2},
    "signal_received": {"pos": 2, "name": "approve", "payload": {"by": "ana"}},
    "event_received": {"pos": 2, "key": "go", "payload": 1},
    "wait_timed_out": {"pos": 2},
    "child_started": {"pos": 3, "workflow": "ship", "child_run_id": "r:3"},
    "child_completed": {"pos": 3, "child_run_id": "r:3", "result": 1},
    "child_failed": {
        "pos": 3,
        "child_run_id": "r:3",
        "status": "failed",
        "error_type": "KeyError",
        "message": "sku",
    },
    "patch_marker": {"patch_id": "v2"},
    "status_set": {"value": "shipping"},
    "cancel_requested": {"reason": "changed my mind"},
    "run_paused": {},
    "run_resumed": {},
    "run_blocked": {"message": "not deterministic at position 2"},
    "run_retried": {"voids": [5, 6]},
    "run_completed": {"result": {"ok": True}},
    "run_failed": {"error_type": "ValueError", "message": "declined", "traceback": "..."},
    "run_cancelled": {"reason": None},
    "run_timed_out": {},
    "run_continued": {"args": [2]},
}


@pytest.mark.parametrize("event_type", [str(t) for t in durable.EventType])
def test_every_event_type_has_a_readable_rendering(event_type: str) -> None:
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    event = durable.Event(seq=1, type=event_type, created_at=now, data=EVENT_DATA[event_type])
    text = summarize(event)
    assert text and not text.startswith("{") and "None" not in text, text
    assert "'pos'" not in text and '"pos"' not in text


def test_an_event_whose_data_is_not_an_object_is_shown_as_it_is() -> None:
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    event = durable.Event(seq=1, type="status_set", created_at=now, data=[1, 2])
    assert summarize(event) == "[1,2]"
    run = durable.RunInfo(run_id="r", workflow="w", status="waiting", created_at=now)
    assert waiting_for(run, [event]) == []


# -- 6. commands say what they did, and what they did not ------------------------------------


def test_start_wait_without_a_worker_says_it_waits_and_times_out_with_one_line(
    cli: Cli, dsn: str, tmp_path: Path
) -> None:
    proc = cli("start", APP, "greet", '"ana"', "--wait", "--timeout", "0.5", "--run-id", "w-1")
    assert proc.returncode == 1
    assert proc.stdout == ""  # a script reads only the result from stdout
    assert "Traceback" not in proc.stderr
    first, last = proc.stderr.strip().splitlines()
    assert first.startswith("waiting for run w-1 to end (at most 0.5s)")
    assert (
        "no live worker serves workflow 'greet': start one with `durable worker cli_app:app`"
        in first
    )
    assert last.startswith("error: run w-1 did not finish within 0.5s (status pending)")

    env = cli_env(dsn, tmp_path)
    args = ["start", APP, "greet", '"bo"', "--wait", "--timeout", "0.5", "--run-id", "w-2"]
    status, out, err = with_tty(args, env, tmp_path, stdout_tty=True)
    assert status == 1
    assert out.splitlines()[0] == "w-2"  # on a terminal the run id comes first
    assert "waiting for run w-2" in err


def test_start_of_an_existing_run_prints_its_id_and_says_existing_run(cli: Cli) -> None:
    first = cli("start", APP, "greet", '"ana"', "--run-id", "same-1")
    assert first.returncode == 0 and first.stdout.strip() == "same-1"
    assert "existing run" not in first.stderr
    again = cli("start", APP, "greet", '"ana"', "--run-id", "same-1")
    assert again.returncode == 0 and again.stdout.strip() == "same-1"
    assert again.stderr.startswith("existing run: a run with id 'same-1' exists")
    assert "status pending" in again.stderr and "nothing new was started" in again.stderr

    keyed = cli("start", APP, "greet", '"ana"', "--idempotency-key", "k-7")
    repeat = cli("start", APP, "greet", '"ana"', "--idempotency-key", "k-7")
    assert repeat.stdout == keyed.stdout and keyed.stderr == ""
    assert f"run {keyed.stdout.strip()} has idempotency key 'k-7'" in repeat.stderr


def test_resume_pause_and_cancel_say_what_happened(cli: Cli, app: durable.App) -> None:
    waiting = app.start("approval").run_id
    with fast_worker(app):
        settle(app, [waiting], {"waiting"})
    pending = app.start("greet", "never-started").run_id  # no worker runs now
    resumed = cli("resume", waiting)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == (
        f"run {waiting} is not paused (status waiting); nothing to resume"
    )
    cli("pause", pending)
    again = cli("pause", pending)
    assert again.stdout.strip() == f"run {pending} is already paused; nothing to do"
    assert cli("resume", pending).stdout.strip() == f"run {pending}: resumed"
    cancelled = cli("cancel", pending)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "had not started (pending): it is cancelled now" in cancelled.stdout
    assert app.get_run(pending).status == "cancelled"
    requested = cli("cancel", waiting)
    assert "cancel requested" in requested.stdout


@pytest.mark.skipif(_find_bin_dir() is None, reason="needs the embedded server")
def test_db_start_of_a_running_server_says_it_was_already_running(tmp_path: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="pgdurable-cli-")) / "home"
    env = cli_env(None, tmp_path, DURABLE_HOME=str(home))

    def db(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "durable", "db", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )

    try:
        started = db("start")
        assert started.returncode == 0, started.stderr
        assert "first start initialises it" in started.stderr
        again = db("start")
        assert again.returncode == 0 and again.stdout == started.stdout
        assert f"the embedded server in {home} was already running" in again.stderr
        assert "nothing to start" in again.stderr
        # Now running: the read-only commands use it, and name it on a terminal.
        status, _, err = with_tty(["runs"], env, tmp_path, stdout_tty=True)
        assert status == 0 and f"database: embedded server in {home}" in err
    finally:
        from durable.embedded import embedded_stop

        embedded_stop(home)
        shutil.rmtree(home.parent, ignore_errors=True)


# -- 7. stats, and the schema from the environment ------------------------------------------


def test_stats_counts_runs_by_status_and_by_workflow(cli: Cli, app: durable.App) -> None:
    assert cli("stats").stdout.strip() == "no runs"
    completed_run(app, "chain", 1)
    completed_run(app, "greet", "ana")
    app.start("greet", "bo")
    proc = cli("stats", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data == app.stats()
    assert data["total"] == 3
    assert data["by_status"] == {"completed": 2, "pending": 1}
    assert data["by_workflow"] == {
        "chain": {"completed": 1},
        "greet": {"completed": 1, "pending": 1},
    }
    human = cli("stats", env={"COLUMNS": "80"})
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert any(re.match(r"completed\s+2$", line.strip()) for line in lines), human.stdout
    assert any(re.match(r"total\s+3$", line.strip()) for line in lines), human.stdout
    assert any(re.match(r"greet\s+2\s+1 pending, 1 completed$", line.strip()) for line in lines)


def test_durable_schema_selects_the_schema_of_commands_without_an_app(cli: Cli) -> None:
    started = cli("start", APP, "greet", '"sam"', "--schema", "other")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    env = {"DURABLE_SCHEMA": "other"}
    listed = json.loads(cli("runs", "--json", env=env).stdout)
    assert [r["run_id"] for r in listed["runs"]] == [run_id]
    assert json.loads(cli("stats", "--json", env=env).stdout)["total"] == 1
    assert cli("show", run_id, env=env).returncode == 0
    assert json.loads(cli("runs", "--json").stdout)["total"] == 0  # not the default schema
    assert json.loads(cli("--schema", "durable", "runs", "--json", env=env).stdout)["total"] == 0


# -- help at 80 columns ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["worker"],
        ["start"],
        ["runs"],
        ["show"],
        ["stats"],
        ["signal"],
        ["cancel"],
        ["fork"],
        ["prune"],
        ["replay"],
        ["db"],
    ],
)
def test_help_fits_80_columns(command: list[str], tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "durable", *command, "--help"],
        capture_output=True,
        text=True,
        env=cli_env(None, tmp_path, COLUMNS="80"),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert all(len(line) <= 80 for line in proc.stdout.splitlines()), proc.stdout
