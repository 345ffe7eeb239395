"""OpenTelemetry: spans and metrics of runs and steps (docs/observability.md).

Optional: with the ``otel`` extra (``opentelemetry-api``) installed and a tracer or meter
provider configured by the application, pgdurable emits

- ``start {workflow}`` (PRODUCER) around ``app.start``; its W3C trace context is stored
  in the run's ``run_started`` event (``trace``), handed to children and kept across
  continue-as-new, so every later span of the run is in the starter's trace, on
  whichever worker and however much later;
- ``step {step}``, one per attempt, with its real start and end, ERROR with the error
  on failure;
- ``run {workflow}`` from the run's start to its end, emitted once, by the worker that
  records the end.

Spans come only from work done now: replaying a log executes no step and records no
end, so it emits nothing. Without the API installed every hook is a no-op and nothing
is imported; nothing reads the environment at import time.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from ._clock import skew

try:  # the otel extra
    from opentelemetry import context as _context
    from opentelemetry import metrics as _metrics
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised by the install without the extra
    ENABLED = False
else:
    ENABLED = True

__all__ = [
    "ENABLED",
    "active",
    "carrier",
    "name_of",
    "record_run_end",
    "record_schedule_to_start",
    "record_start",
    "run_context",
    "start_span",
    "step_span",
    "trace_of",
]

_SCOPE = "pgdurable"


def active() -> bool:
    """Whether anything would be recorded: the API is installed and the application set a
    tracer or meter provider (without one the API records nothing; skipping the calls
    keeps a step's cost as without the API)."""
    if not ENABLED:
        return False
    return (
        not isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider)
        or type(_metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider"
    )


_instruments: dict[str, Any] = {}


def _tracer() -> Any:
    return _trace.get_tracer(_SCOPE)


def _instrument(name: str) -> Any:
    """The counter or histogram ``name`` (made on first use, on the global provider)."""
    found = _instruments.get(name)
    if found is None:
        meter = _metrics.get_meter(_SCOPE)
        if name == "durable.step.duration":
            found = meter.create_histogram(name, unit="s", description="Step attempt duration")
        elif name == "durable.run.schedule_to_start":
            found = meter.create_histogram(
                name, unit="s", description="From a run's creation to its first execution"
            )
        else:
            found = meter.create_counter(name, description=_COUNTERS[name])
        _instruments[name] = found
    return found


_COUNTERS = {
    "durable.runs.started": "Runs started",
    "durable.runs.ended": "Runs ended, by status",
    "durable.steps": "Step attempts, by outcome",
}


def reset_instruments() -> None:
    """Forget the instruments made so far (after the meter provider changed: tests)."""
    _instruments.clear()


def _ns(when: datetime | None) -> int | None:
    """Nanoseconds of real time (a test env's virtual clock runs ahead of it)."""
    return None if when is None else int((when - skew()).timestamp() * 1e9)


# -- the starter's side ------------------------------------------------------------------


def name_of(workflow: Any) -> str:
    """The name spans and metrics give a workflow passed as a function or a name."""
    return workflow if isinstance(workflow, str) else getattr(workflow, "durable_name", "?")


@contextlib.contextmanager
def start_span(workflow: str) -> Iterator[Any]:
    """``start {workflow}`` around creating a run; the current span while it runs (so
    :func:`carrier` stores its context with the run)."""
    if not active():
        yield None
        return
    with _tracer().start_as_current_span(
        f"start {workflow}", kind=SpanKind.PRODUCER, attributes={"durable.workflow": workflow}
    ) as span:
        yield span


def carrier() -> dict[str, str] | None:
    """The current trace context as W3C headers (``traceparent``), or None if there is
    no sampled span to continue."""
    if not ENABLED:
        return None
    span = _trace.get_current_span()
    if not span.get_span_context().is_valid:
        return None
    out: dict[str, str] = {}
    _propagate.inject(out)
    return out or None


def record_start(span: Any, workflow: str, run_id: str, created: bool) -> None:
    """After the run was created (or found): name it on the span; count a new run."""
    if not active():
        return
    if span is not None:
        span.set_attribute("durable.run_id", run_id)
        span.set_attribute("durable.created", created)
    if created:
        _instrument("durable.runs.started").add(1, {"durable.workflow": workflow})


# -- the worker's side -------------------------------------------------------------------


def trace_of(engine: Any) -> dict[str, str] | None:
    """The trace context stored with a run (its ``run_started`` event's ``trace``)."""
    started = engine.started
    trace = started.data.get("trace") if started is not None else None
    return trace if isinstance(trace, dict) else None


@contextlib.contextmanager
def run_context(trace: Any) -> Iterator[None]:
    """Make the run's stored trace context current (the parent of what the worker does
    for the run now, children it starts included)."""
    if not ENABLED or not isinstance(trace, dict):
        yield
        return
    token = _context.attach(_propagate.extract(trace))
    try:
        yield
    finally:
        _context.detach(token)


_OUTCOMES = {
    "step_completed": "completed",
    "step_attempt_failed": "retried",
    "step_failed": "failed",
}


class StepSpan:
    """The span of one step attempt; :meth:`ended` says how it went."""

    def __init__(self, span: Any, attrs: dict[str, Any]) -> None:
        self._span = span
        self._attrs = attrs
        self._t0 = time.monotonic()

    def recorded(self, event: Any) -> None:
        """The attempt's event (None: a transactional step wrote its own result)."""
        if event is None:
            self.ended("completed")
            return
        data = event.data
        self.ended(
            _OUTCOMES.get(str(event.type), "completed"), data.get("error_type"), data.get("message")
        )

    def ended(
        self, outcome: str, error_type: str | None = None, message: str | None = None
    ) -> None:
        """``outcome``: completed, retried (a failed attempt that is retried) or failed."""
        span = self._span
        if error_type is not None:
            span.add_event(
                "exception", {"exception.type": error_type, "exception.message": message or ""}
            )
            span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}"))
        span.set_attribute("durable.outcome", outcome)
        attrs = {"durable.workflow": self._attrs["durable.workflow"], "outcome": outcome}
        _instrument("durable.steps").add(1, attrs)
        _instrument("durable.step.duration").record(time.monotonic() - self._t0, attrs)


@contextlib.contextmanager
def step_span(
    trace: Any, run_id: str, workflow: str, step: str, attempt: int
) -> Iterator[StepSpan | None]:
    """``step {step}`` around one attempt executed now, in the run's trace."""
    if not ENABLED:
        yield None
        return
    attrs = {
        "durable.run_id": run_id,
        "durable.workflow": workflow,
        "durable.step": step,
        "durable.attempt": attempt,
    }
    parent = _parent(trace, run_id)
    with _tracer().start_as_current_span(
        f"step {step}",
        context=parent,
        kind=SpanKind.INTERNAL,
        attributes=attrs,
        record_exception=True,
        set_status_on_exception=True,
    ) as span:
        yield StepSpan(span, attrs)


def _parent(trace: Any, run_id: str) -> Any:
    """The context a run's spans hang from: the starter's stored trace context, or, for a
    run started with none (a schedule's tick, SQL's ``start_run``), one derived from the
    run id, so that its spans still share one trace whichever worker makes them."""
    if isinstance(trace, dict):
        return _propagate.extract(trace)
    digest = hashlib.blake2b(run_id.encode(), digest_size=24).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:], "big") or 1
    root = _trace.SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=_trace.TraceFlags(_trace.TraceFlags.SAMPLED)
    )
    return _trace.set_span_in_context(_trace.NonRecordingSpan(root))


def record_run_end(
    trace: Any,
    run_id: str,
    workflow: str,
    started_at: datetime | None,
    status: str,
    error: dict[str, Any] | None,
) -> None:
    """``run {workflow}`` from the run's start to now, when its end is recorded."""
    if not ENABLED:
        return
    parent = _parent(trace, run_id)
    span = _tracer().start_span(
        f"run {workflow}",
        context=parent,
        kind=SpanKind.INTERNAL,
        attributes={
            "durable.run_id": run_id,
            "durable.workflow": workflow,
            "durable.status": status,
        },
        start_time=_ns(started_at),
    )
    if error is not None and status != "completed":
        span.add_event(
            "exception",
            {
                "exception.type": str(error.get("error_type", "")),
                "exception.message": str(error.get("message", "")),
            },
        )
    if status != "completed":
        span.set_status(Status(StatusCode.ERROR, status))
    span.end()
    _instrument("durable.runs.ended").add(1, {"durable.workflow": workflow, "status": status})


def record_schedule_to_start(workflow: str, seconds: float) -> None:
    """A run executes for the first time ``seconds`` after it was created."""
    if ENABLED:
        _instrument("durable.run.schedule_to_start").record(
            max(seconds, 0.0), {"durable.workflow": workflow}
        )
