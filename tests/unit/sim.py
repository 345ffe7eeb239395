"""An in-memory stand-in for the worker, to drive the engine in unit tests.

``Sim`` plays the worker's role deterministically: it executes pending steps (with
retries), starts and fires timers, delivers scripted signals and events, finishes child
runs, requests cancellation, and appends every event to an in-memory log. Every decision
is a function of the log and of the ``Script`` only, so a test can run a workflow to the
end, throw the engine away at any batch boundary, rebuild a ``Sim`` from the log written
so far, continue, and compare.

Time is simulated: it starts at ``BASE`` and jumps to the next due time when nothing can
happen now. Each append is one batch (like one transaction of the real worker): the
markers the code produced since the last batch, then the new event.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from durable.replay import (
    Blocked,
    CancelledOutcome,
    Completed,
    ContinuedAsNew,
    Engine,
    Failed,
    HistoryEvent,
    Outcome,
    PendingChild,
    PendingStep,
    PendingTimer,
    PendingWait,
    StepCall,
    TimedOut,
    current_context,
)

# Frames of this module are not "user code" for the never-yielded check's location.
__durable_internal__ = True

BASE = datetime(2024, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``BASE`` plus ``seconds``."""
    return BASE + timedelta(seconds=seconds)


class StepError(Exception):
    """What scripted step failures raise."""


class SimStep:
    """Stands in for the durable layer's step object (``@app.step``).

    Called inside a workflow it returns a ``StepCall`` registered with the context;
    anywhere else it runs the function. ``fn`` may take a keyword ``attempt``.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        *,
        max_attempts: int = 3,
        retry_interval: float = 1.0,
        non_retryable: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.max_attempts = max_attempts
        self.retry_interval = retry_interval
        self.non_retryable = non_retryable
        self.wants_attempt = "attempt" in inspect.signature(fn).parameters
        self.executions = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = current_context()
        if ctx is None:
            return self.fn(*args, **kwargs)
        call = StepCall(self.name, args, kwargs, options=self)
        ctx._created(call)
        return call

    def execute(self, call: StepCall, attempt: int) -> Any:
        self.executions += 1
        if self.wants_attempt:
            return self.fn(*call.args, attempt=attempt, **call.kwargs)
        return self.fn(*call.args, **call.kwargs)


def step(
    name: str | None = None, *, max_attempts: int = 3, retry_interval: float = 1.0
) -> Callable[[Callable[..., Any]], SimStep]:
    """Decorator: ``@step()`` makes a ``SimStep``."""

    def wrap(fn: Callable[..., Any]) -> SimStep:
        return SimStep(fn, name, max_attempts=max_attempts, retry_interval=retry_interval)

    return wrap


ChildScript = Callable[[tuple[Any, ...]], tuple[float, tuple[Any, ...]]]
"""``args -> (duration, ("ok", result) | ("failed", status, error_type, message))``."""


@dataclass
class Script:
    """Everything outside the workflow that the simulated world does, with times."""

    signals: list[tuple[float, str, Any]] = field(default_factory=list)  # (at, name, payload)
    events: dict[str, tuple[float, Any]] = field(default_factory=dict)  # key -> (at, payload)
    children: dict[str, ChildScript] = field(default_factory=dict)
    cancels: list[tuple[float, str | None]] = field(default_factory=list)  # (at, reason)
    deadline: float | None = None  # seconds after BASE: run_timed_out


def decode(kind: str, name: str, raw: Any) -> Any:
    """The sim stores values as they are; arguments come back as a tuple."""
    return tuple(raw) if kind == "args" else raw


def started_event(workflow: str, args: tuple[Any, ...], seed: int = 7) -> HistoryEvent:
    return HistoryEvent(
        1, "run_started", {"workflow": workflow, "args": list(args), "seed": seed}, BASE
    )


def _timestamp(when: datetime) -> str:
    return when.isoformat()


@dataclass(order=True)
class _Action:
    due: datetime
    rank: int
    pos: int
    kind: str = field(compare=False)
    item: Any = field(compare=False, default=None)


class Sim:
    """Runs one workflow against a scripted world; see the module docstring."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        script: Script | None = None,
        workflow: str | None = None,
        run_id: str = "r1",
        seed: int = 7,
        log: list[HistoryEvent] | None = None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.script = script or Script()
        self.workflow = workflow or fn.__name__
        self.run_id = run_id
        self.seed = seed
        self.finished = False
        self.engine = self.new_engine()
        if log is None:
            self.log = [started_event(self.workflow, args, seed)]
            self.engine.feed(self.log, replaying=False)
        else:
            self.log = list(log)
            self.engine.feed(self.log, replaying=True)
            self.finished = self.log[-1].type in _ENDS
        self.boundaries = [len(self.log)]
        self.held = self.engine.take_markers()

    # -- construction helpers -------------------------------------------------------------

    def new_engine(self) -> Engine:
        return Engine(self.fn, workflow=self.workflow, run_id=self.run_id, decode=decode)

    def resumed(self, upto: int) -> Sim:
        """A new Sim (fresh engine) rebuilt from the first ``upto`` events of this log."""
        return Sim(
            self.fn,
            *self.args,
            script=self.script,
            workflow=self.workflow,
            run_id=self.run_id,
            seed=self.seed,
            log=self.log[:upto],
        )

    def replayed(self) -> Engine:
        """A fresh engine fed the whole log as one replayed batch."""
        engine = self.new_engine()
        engine.feed(self.log, replaying=True)
        return engine

    # -- state read from the log ----------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self.log[-1].created_at

    @property
    def outcome(self) -> Outcome | None:
        return self.engine.outcome

    @property
    def result(self) -> Any:
        outcome = self.engine.outcome
        assert isinstance(outcome, Completed), outcome
        return outcome.result

    def types(self) -> list[str]:
        return [e.type for e in self.log]

    def events_of(self, kind: str) -> Iterator[HistoryEvent]:
        return (e for e in self.log if e.type == kind)

    # -- driving ----------------------------------------------------------------------------

    def run(self, max_batches: int = 10_000) -> Sim:
        """Advance until the run ends or nothing more can happen."""
        for _ in range(max_batches):
            if not self.tick():
                return self
        raise AssertionError("the simulation did not settle")

    def tick(self) -> bool:
        """Append one batch; False once there is nothing more to do."""
        if self.finished:
            return False
        outcome = self.engine.outcome
        if isinstance(outcome, TimedOut):  # run_timed_out is already the last event
            self.finished = True
            return False
        if outcome is not None:
            self._append(self.now, [_terminal(outcome)])
            self.finished = True
            return False
        actions = list(self._actions())
        if not actions:
            if self.held:
                self._append(self.now, [])
            return False
        action = min(actions)
        when = max(action.due, self.now)
        self._append(when, self._perform(action, when))
        return True

    def append(self, kind: str, data: dict[str, Any], when: datetime | None = None) -> None:
        """Append one event written from outside (a client), as its own batch."""
        self._append(when or self.now, [(kind, data)])

    def retry(self) -> None:
        """What ``app.retry`` does: void the failure, then replay from scratch."""
        failed = next((e for e in reversed(self.log) if e.type == "run_failed"), None)
        voids: list[int] = []
        if failed is not None:
            voids.append(failed.seq)
            cause = failed.data.get("cause_pos")
            if cause is not None:
                voids += [
                    e.seq
                    for e in self.log
                    if e.type in ("step_attempt_failed", "step_failed") and e.data["pos"] == cause
                ]
        self.log.append(HistoryEvent(len(self.log) + 1, "run_retried", {"voids": voids}, self.now))
        self.boundaries.append(len(self.log))
        self.engine = self.new_engine()
        self.engine.feed(self.log, replaying=True)
        self.held = self.engine.take_markers()
        self.finished = False

    # -- internals ------------------------------------------------------------------------

    def _append(self, when: datetime, new: list[tuple[str, dict[str, Any]]]) -> None:
        batch: list[HistoryEvent] = []
        for kind, data in [*self.held, *new]:
            batch.append(HistoryEvent(len(self.log) + len(batch) + 1, kind, data, when))
        self.held = []
        self.log.extend(batch)
        self.boundaries.append(len(self.log))
        self.engine.feed(batch, replaying=False)
        self.held = self.engine.take_markers()

    def _consumed_signals(self, name: str) -> int:
        return sum(1 for e in self.events_of("signal_received") if e.data["name"] == name)

    def _actions(self) -> Iterator[_Action]:
        now = self.now
        script = self.script
        for item in self.engine.pending():
            pos = item.pos
            if isinstance(item, PendingStep):
                yield _Action(item.not_before or now, 1, pos, "step", item)
            elif isinstance(item, PendingTimer):
                if item.fire_at is None:
                    yield _Action(now, 0, pos, "timer_started", item)
                else:
                    yield _Action(item.fire_at, 2, pos, "timer_fired", item)
            elif isinstance(item, PendingWait):
                if item.timeout is not None:
                    if item.timeout_at is None:
                        yield _Action(now, 0, pos, "timer_started", item)
                    else:
                        yield _Action(item.timeout_at, 5, pos, "wait_timed_out", item)
                if item.kind == "signal":
                    waiting = [s for s in script.signals if s[1] == item.name]
                    index = self._consumed_signals(item.name)
                    if index < len(waiting):
                        yield _Action(at(waiting[index][0]), 3, pos, "signal", waiting[index])
                elif item.name in script.events:
                    when, payload = script.events[item.name]
                    yield _Action(at(when), 4, pos, "event", (item.name, payload))
            elif isinstance(item, PendingChild):
                if item.child_run_id is None:
                    yield _Action(now, 0, pos, "child_started", item)
                else:
                    started = next(
                        e.created_at
                        for e in self.events_of("child_started")
                        if e.data["pos"] == pos and e.data["child_run_id"] == item.child_run_id
                    )
                    duration, result = script.children[item.call.workflow](item.call.args)
                    yield _Action(
                        started + timedelta(seconds=duration), 6, pos, "child_done", (item, result)
                    )
        cancels_written = sum(1 for _ in self.events_of("cancel_requested"))
        if cancels_written < len(script.cancels):
            when, reason = script.cancels[cancels_written]
            yield _Action(at(when), 7, 0, "cancel", reason)
        if script.deadline is not None:
            yield _Action(at(script.deadline), 8, 0, "deadline")

    def _perform(self, action: _Action, when: datetime) -> list[tuple[str, dict[str, Any]]]:
        item = action.item
        kind = action.kind
        pos = action.pos
        if kind == "step":
            return [self._run_step(item, when)]
        if kind == "timer_started":
            if isinstance(item, PendingTimer):
                fire = (
                    item.until if item.until is not None else when + timedelta(seconds=item.seconds)
                )
            else:
                fire = when + timedelta(seconds=item.timeout)
            return [("timer_started", {"pos": pos, "fire_at": _timestamp(fire)})]
        if kind == "timer_fired":
            return [("timer_fired", {"pos": pos})]
        if kind == "wait_timed_out":
            return [("wait_timed_out", {"pos": pos})]
        if kind == "signal":
            _, name, payload = item
            return [("signal_received", {"pos": pos, "name": name, "payload": payload})]
        if kind == "event":
            key, payload = item
            return [("event_received", {"pos": pos, "key": key, "payload": payload})]
        if kind == "child_started":
            data = {
                "pos": pos,
                "workflow": item.call.workflow,
                "child_run_id": f"{self.run_id}-{pos}",
            }
            return [("child_started", data)]
        if kind == "child_done":
            pending, result = item
            if result[0] == "ok":
                return [
                    (
                        "child_completed",
                        {"pos": pos, "child_run_id": pending.child_run_id, "result": result[1]},
                    )
                ]
            _, status, error_type, message = result
            data = {
                "pos": pos,
                "child_run_id": pending.child_run_id,
                "status": status,
                "error_type": error_type,
                "message": message,
            }
            return [("child_failed", data)]
        if kind == "cancel":
            return [("cancel_requested", {"reason": item})]
        if kind == "deadline":
            return [("run_timed_out", {})]
        raise AssertionError(kind)

    def _run_step(self, item: PendingStep, when: datetime) -> tuple[str, dict[str, Any]]:
        call = item.call
        step_obj = call.options
        assert isinstance(step_obj, SimStep), call
        try:
            result = step_obj.execute(call, item.attempt)
        except Exception as exc:
            base = {"pos": item.pos, "name": call.name}
            error = {"error_type": type(exc).__qualname__, "message": str(exc)}
            final = item.attempt >= step_obj.max_attempts or isinstance(exc, step_obj.non_retryable)
            if final:
                return ("step_failed", {**base, "attempts": item.attempt, **error})
            retry_at = when + timedelta(seconds=step_obj.retry_interval * item.attempt)
            data = {**base, "attempt": item.attempt, **error, "retry_at": _timestamp(retry_at)}
            return ("step_attempt_failed", data)
        return (
            "step_completed",
            {"pos": item.pos, "name": call.name, "attempt": item.attempt, "result": result},
        )


_ENDS = frozenset(
    {
        "run_completed",
        "run_failed",
        "run_cancelled",
        "run_timed_out",
        "run_continued",
        "run_blocked",
    }
)


def _terminal(outcome: Outcome) -> tuple[str, dict[str, Any]]:
    if isinstance(outcome, Completed):
        return ("run_completed", {"result": outcome.result})
    if isinstance(outcome, Failed):
        error = outcome.error
        return (
            "run_failed",
            {
                "error_type": type(error).__qualname__,
                "message": str(error),
                "traceback": "",
                "cause_pos": outcome.cause_pos,
            },
        )
    if isinstance(outcome, CancelledOutcome):
        return ("run_cancelled", {"reason": outcome.reason})
    if isinstance(outcome, ContinuedAsNew):
        return ("run_continued", {"args": list(outcome.args)})
    if isinstance(outcome, Blocked):
        return ("run_blocked", {"message": str(outcome.error)})
    raise AssertionError(f"no terminal event for {outcome!r}")


# -- hand-written logs ----------------------------------------------------------------------


def make_log(
    workflow: str, args: tuple[Any, ...], *entries: tuple[str, dict[str, Any]], seed: int = 7
) -> list[HistoryEvent]:
    """``run_started`` then ``entries`` (type, data), one simulated second apart."""
    log = [started_event(workflow, args, seed)]
    for kind, data in entries:
        log.append(HistoryEvent(len(log) + 1, kind, data, at(len(log))))
    return log


def engine_for(
    fn: Callable[..., Any],
    log: list[HistoryEvent],
    *,
    replaying: bool = True,
    workflow: str | None = None,
) -> Engine:
    """A fresh engine for ``fn`` fed ``log`` as one batch."""
    engine = Engine(fn, workflow=workflow or fn.__name__, run_id="r1", decode=decode)
    engine.feed(log, replaying=replaying)
    return engine


def done(pos: int, name: str, result: Any, attempt: int = 1) -> tuple[str, dict[str, Any]]:
    """A ``step_completed`` entry for ``make_log``."""
    return ("step_completed", {"pos": pos, "name": name, "attempt": attempt, "result": result})
