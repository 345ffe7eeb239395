"""``drive``: run a workflow with no database, its steps answered from a dict.

It plays the worker's part against the real engine: the same events a worker would
write (step results, retries with the step's policy, timers, signals, events,
children) are fed to the engine as they happen; timers fire at once (the clock jumps).
Nothing is encoded: values go in and come out as the Python objects given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .._codec import qualified_name
from .._errors import RunTimedOut
from ..replay import (
    Blocked,
    CancelledOutcome,
    Completed,
    ContinuedAsNew,
    Engine,
    Failed,
    HistoryEvent,
    PendingChild,
    PendingStep,
    PendingTimer,
    PendingWait,
    TimedOut,
)
from ..worker._steps import failure_event, step_def

__all__ = ["drive"]

#: a workflow that keeps going after this many events is taken to be looping
MAX_EVENTS = 100_000


class _Answers:
    """Successive answers per name: a list answers successive calls, anything else
    answers every call."""

    def __init__(self, what: str, answers: Mapping[str, Any] | None) -> None:
        self._what = what
        self._answers = dict(answers or {})
        self._used: dict[str, int] = {}

    def has(self, name: str) -> bool:
        return name in self._answers

    def next(self, name: str) -> Any:
        value = self._answers[name]
        if not isinstance(value, list):
            return value
        used = self._used.get(name, 0)
        if used >= len(value):
            raise AssertionError(
                f"drive: {self._what} {name!r} was called {used + 1} times, but "
                f"results[{name!r}] has only {len(value)} answers"
            )
        self._used[name] = used + 1
        return value[used]


def drive(
    workflow: Callable[..., Any],
    *args: Any,
    results: Mapping[str, Any] | None = None,
    signals: Mapping[str, list[Any]] | None = None,
    events: Mapping[str, Any] | None = None,
) -> Any:
    """Run ``workflow`` (an ``@app.workflow`` generator function) with ``args`` and no
    database: each step call is answered from ``results[step name]`` (a list answers
    successive calls, retries included; an exception instance is raised by the
    attempt, and retried by the step's policy), a child from ``results[child workflow
    name]`` the same way, signals from ``signals[name]`` in order, events from
    ``events[key]``; timers fire at once. Returns the workflow's result or raises its
    error (a failed step reaches it as :class:`durable.StepFailed`, as in production).

    A step, child, signal or event with no answer left raises ``AssertionError`` naming
    it, as does a wait that nothing can end."""
    name = getattr(workflow, "durable_name", None)
    if name is None:
        raise TypeError(f"drive needs an @app.workflow() function, not {workflow!r}")
    answers = _Answers("step", results)
    inbox = {key: list(values) for key, values in (signals or {}).items()}
    for key, values in inbox.items():
        if not isinstance(values, list):
            raise TypeError(f"drive: signals[{key!r}] must be a list of payloads")
    latched = dict(events or {})
    definition = getattr(workflow, "durable_workflow", None)
    timeout = getattr(definition, "timeout", None)
    while True:
        run = _Run(workflow, name, args, answers, inbox, latched, timeout)
        outcome = run.go()
        if isinstance(outcome, ContinuedAsNew):
            args = tuple(outcome.args)
            continue
        if isinstance(outcome, Completed):
            return outcome.result
        if isinstance(outcome, Failed):
            raise outcome.error
        if isinstance(outcome, Blocked):
            raise outcome.error
        if isinstance(outcome, CancelledOutcome):  # pragma: no cover - nothing cancels here
            raise AssertionError(f"drive: the run was cancelled ({outcome.reason})")
        if isinstance(outcome, TimedOut):
            raise RunTimedOut(f"{name} (driven)")
        raise AssertionError(f"drive: unexpected outcome {outcome!r}")  # pragma: no cover


def _decode(kind: str, name: str, raw: Any) -> Any:
    return tuple(raw) if kind == "args" else raw


class _Run:
    def __init__(
        self,
        fn: Callable[..., Any],
        workflow: str,
        args: tuple[Any, ...],
        answers: _Answers,
        inbox: dict[str, list[Any]],
        latched: dict[str, Any],
        timeout: float | None = None,
    ) -> None:
        self.workflow = workflow
        self.answers = answers
        self.inbox = inbox
        self.latched = latched
        self.now = datetime.now(UTC)
        self.deadline = None if timeout is None else self.now + timedelta(seconds=timeout)
        self.log: list[HistoryEvent] = []
        self.engine = Engine(fn, workflow=workflow, run_id="drive", decode=_decode)
        self._append([("run_started", {"workflow": workflow, "args": list(args), "seed": 7})])

    def go(self) -> Any:
        engine = self.engine
        try:
            while engine.outcome is None:
                if len(self.log) > MAX_EVENTS:
                    raise AssertionError(
                        f"drive: {self.workflow} wrote {MAX_EVENTS} events without ending"
                    )
                self._append(self._next())
            return engine.outcome
        finally:
            engine.close()

    def _append(self, new: list[tuple[str, dict[str, Any]]]) -> None:
        batch = [*self.engine.take_markers(), *new]
        events = [
            HistoryEvent(len(self.log) + i, kind, data, self.now)
            for i, (kind, data) in enumerate(batch, start=1)
        ]
        self.log.extend(events)
        self.engine.feed(events, replaying=False)

    def _next(self) -> list[tuple[str, dict[str, Any]]]:
        """What happens next: things that need no time first, then the earliest timer."""
        timers: list[tuple[datetime, int, tuple[str, dict[str, Any]]]] = []
        stuck: list[str] = []
        for p in self.engine.pending():
            if isinstance(p, PendingStep):
                if p.not_before is not None and p.not_before > self.now:
                    timers.append((p.not_before, p.pos, ("", {})))
                    continue
                return [self._step(p)]
            if isinstance(p, PendingTimer):
                if p.fire_at is None:
                    fire = p.until or self.now + timedelta(seconds=p.seconds or 0.0)
                    return [("timer_started", {"pos": p.pos, "fire_at": fire.isoformat()})]
                timers.append((p.fire_at, p.pos, ("timer_fired", {"pos": p.pos})))
            elif isinstance(p, PendingWait):
                got = self._deliver(p)
                if got is not None:
                    return [got]
                if p.timeout is not None and p.timeout_at is None:
                    fire = self.now + timedelta(seconds=p.timeout)
                    data = {"pos": p.pos, "fire_at": fire.isoformat(), "kind": p.kind}
                    return [("timer_started", {**data, "name": p.name})]
                if p.timeout is None and not p.started:
                    return [("wait_started", {"pos": p.pos, "kind": p.kind, "name": p.name})]
                if p.timeout_at is not None:
                    timers.append((p.timeout_at, p.pos, ("wait_timed_out", {"pos": p.pos})))
                else:
                    stuck.append(f"{'signal' if p.kind == 'signal' else 'event'} {p.name!r}")
            elif isinstance(p, PendingChild):
                return self._child(p)
        if timers:
            when, _, event = min(timers, key=lambda t: (t[0], t[1]))
            if self.deadline is not None and when >= self.deadline:
                return self._time_out()
            self.now = max(self.now, when)
            return [event] if event[0] else []
        if self.deadline is not None and stuck:
            return self._time_out()
        what = ", ".join(stuck) or "nothing"
        raise AssertionError(
            f"drive: {self.workflow} waits for {what} and nothing is left to deliver; "
            "give it in signals= or events="
        )

    def _time_out(self) -> list[tuple[str, dict[str, Any]]]:
        """The workflow timeout passes before anything else would happen."""
        assert self.deadline is not None
        self.now = self.deadline
        return [("run_timed_out", {})]

    def _deliver(self, p: PendingWait) -> tuple[str, dict[str, Any]] | None:
        if p.kind == "signal":
            queue = self.inbox.get(p.name)
            if queue:
                payload = queue.pop(0)
                return ("signal_received", {"pos": p.pos, "name": p.name, "payload": payload})
            return None
        if p.name in self.latched:
            payload = self.latched[p.name]
            return ("event_received", {"pos": p.pos, "key": p.name, "payload": payload})
        return None

    def _step(self, p: PendingStep) -> tuple[str, dict[str, Any]]:
        name = p.call.name
        if not self.answers.has(name):
            raise AssertionError(
                f"drive: step {name!r} was called but results= has no answer for it; "
                f"add results={{{name!r}: ...}}"
            )
        value = self.answers.next(name)
        base = {"pos": p.pos, "name": name}
        if not isinstance(value, BaseException):
            return ("step_completed", {**base, "attempt": p.attempt, "result": value})
        failed = failure_event(p, step_def(p.call), value, self.now)  # as a worker would
        return (str(failed.type), failed.data)

    def _child(self, p: PendingChild) -> list[tuple[str, dict[str, Any]]]:
        workflow = p.call.workflow
        child_id = p.child_run_id or f"drive:{p.pos}"
        out: list[tuple[str, dict[str, Any]]] = []
        if p.child_run_id is None:
            out.append(
                ("child_started", {"pos": p.pos, "workflow": workflow, "child_run_id": child_id})
            )
        if not self.answers.has(workflow):
            raise AssertionError(
                f"drive: child workflow {workflow!r} was started but results= has no "
                f"answer for it; add results={{{workflow!r}: ...}}"
            )
        value = self.answers.next(workflow)
        if isinstance(value, BaseException):
            data = {
                "pos": p.pos,
                "child_run_id": child_id,
                "status": "failed",
                "error_type": qualified_name(type(value)),
                "message": str(value) or "child failed",
            }
            out.append(("child_failed", data))
        else:
            out.append(
                ("child_completed", {"pos": p.pos, "child_run_id": child_id, "result": value})
            )
        return out
