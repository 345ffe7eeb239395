"""OpenTelemetry with the SDK: one trace per run from the starter's span, a span per step
attempt with its error, a run span at the end, nothing for replayed history, and one
trace across a worker killed mid-run and the worker that finished it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import durable
from durable import telemetry

from .waiting import wait_for

SPANS = InMemorySpanExporter()
READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def providers() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    telemetry.reset_instruments()


def spans_of(run_id: str) -> list[Any]:
    return [
        s
        for s in SPANS.get_finished_spans()
        if str(s.attributes.get("durable.run_id", "")).startswith(run_id)
    ]


def test_a_run_is_one_trace_with_a_span_per_attempt_and_nothing_on_replay(
    app: durable.App, worker: Any
) -> None:
    tries: list[int] = []

    @app.step("flaky", retry=durable.RetryPolicy(max_attempts=3, initial_interval=0.01))
    def flaky(x: int) -> int:
        tries.append(x)
        if len(tries) == 1:
            raise ConnectionError("try again")
        return x

    @app.workflow(name="kid")
    def kid(ctx: durable.Context, x: int) -> Any:
        return (yield flaky(x))

    @app.workflow(name="parent")
    def parent(ctx: durable.Context) -> Any:
        a = yield flaky(1)
        return a + (yield ctx.child("kid", 2))

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("http request") as outer:
        run = app.start(parent)
    with worker(app):
        assert run.result(timeout=30) == 3
    mine = spans_of(run.run_id)
    names = sorted(s.name for s in mine)
    assert names == [
        "run kid",
        "run parent",
        "start parent",
        "step flaky",
        "step flaky",
        "step flaky",
    ]
    # one trace: the caller's
    assert {s.context.trace_id for s in mine} == {outer.get_span_context().trace_id}
    failed = [
        s
        for s in mine
        if s.name == "step flaky"
        and s.attributes["durable.attempt"] == 1
        and s.attributes["durable.workflow"] == "parent"
    ]
    assert len(failed) == 1 and failed[0].status.status_code.name == "ERROR"
    assert failed[0].events[0].attributes["exception.type"] == "ConnectionError"
    start = next(s for s in mine if s.name == "start parent")
    assert (
        start.kind.name == "PRODUCER" and start.parent.span_id == outer.get_span_context().span_id
    )
    # replaying every stored log emits nothing
    before = len(SPANS.get_finished_spans())
    assert app.check_replay().mismatches == []
    assert len(SPANS.get_finished_spans()) == before
    # the metrics the contract names
    data = READER.get_metrics_data()
    seen = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {
        "durable.runs.started",
        "durable.runs.ended",
        "durable.steps",
        "durable.step.duration",
        "durable.run.schedule_to_start",
    } <= seen


WORKER = """
import os, sys, time
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, ConsoleSpanExporter

out = open(sys.argv[1], "a", buffering=1)
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(
    ConsoleSpanExporter(out=out, formatter=lambda s: s.to_json(indent=None) + "\\n")))
trace.set_tracer_provider(provider)

import durable
app = durable.App(os.environ["TEST_DSN"])

@app.step("first")
def first() -> str:
    return "one"

@app.step("second")
def second() -> str:
    if os.environ.get("HANG"):
        open(sys.argv[2], "w").close()  # tell the test we are inside the step
        time.sleep(600)
    return "two"

@app.workflow(name="crashy")
def crashy(ctx):
    a = yield first()
    b = yield second()
    return a + b

if __name__ == "__main__":
    app.run_worker(concurrency=2, lease_seconds=2.0, poll_interval=0.2)
"""


def test_one_trace_across_a_worker_killed_mid_run(dsn: str, tmp_path: Path) -> None:
    script = tmp_path / "crashy_worker.py"
    script.write_text(textwrap.dedent(WORKER))
    env = {**os.environ, "TEST_DSN": dsn, "PYTHONPATH": str(tmp_path)}
    app = durable.App(dsn)  # the starter: it only needs the workflow's name and signature

    @app.workflow(name="crashy")
    def crashy(ctx: durable.Context) -> Any:
        yield ctx.sleep(0)

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("caller") as outer:
        run = app.start("crashy")
    inside = tmp_path / "inside"
    spans1, spans2 = tmp_path / "w1.jsonl", tmp_path / "w2.jsonl"
    first = subprocess.Popen(
        [sys.executable, str(script), str(spans1), str(inside)], env={**env, "HANG": "1"}
    )
    try:
        wait_for(inside.exists, timeout=60, what="the first worker inside the second step")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    second = subprocess.Popen([sys.executable, str(script), str(spans2), str(inside)], env=env)
    try:
        assert run.result(timeout=60) == "onetwo"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
        app.close()
    exported = [
        json.loads(line)
        for path in (spans1, spans2)
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in exported:
        if span["attributes"].get("durable.run_id") == run.run_id:
            by_name.setdefault(span["name"], []).append(span)
    # the first step ran once (the second worker replayed it, emitting nothing); the
    # killed attempt of the second step never ended, so only the finished one is there
    assert len(by_name["step first"]) == 1 and len(by_name["step second"]) == 1
    assert len(by_name["run crashy"]) == 1
    trace_id = f"0x{outer.get_span_context().trace_id:032x}"
    assert {s["context"]["trace_id"] for group in by_name.values() for s in group} == {trace_id}


def test_a_run_started_without_a_trace_still_is_one_trace(
    app: durable.App, worker: Any, dsn: str
) -> None:
    import psycopg

    @app.step("tick_step")
    def tick_step(i: int) -> int:
        return i

    @app.workflow(name="untraced")
    def untraced(ctx: durable.Context) -> Any:
        a = yield tick_step(1)
        return a + (yield tick_step(2))

    _ = app.store  # the schema exists
    with psycopg.connect(dsn, autocommit=True) as conn:  # SQL's start_run stores no trace
        row = conn.execute("SELECT durable.start_run('untraced')").fetchone()
    assert row is not None
    run = app.handle(row[0])
    with worker(app):
        assert run.result(timeout=30) == 3
    mine = spans_of(run.run_id)
    assert sorted(s.name for s in mine) == ["run untraced", "step tick_step", "step tick_step"]
    assert len({s.context.trace_id for s in mine}) == 1  # derived from the run id
