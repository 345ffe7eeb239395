"""Running one attempt of a step and describing its outcome as an event."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Hashable
from datetime import datetime, timedelta
from typing import Any

from .._clock import utcnow
from .._codec import Codec, qualified_name
from .._errors import SerializationError
from .._registry import StepDef, StepOptions
from ..replay import PendingStep, StepCall
from ..replay.errors import DurableError
from ..replay.vocabulary import EventType
from ..store import NewEvent
from ._attempts import Attempt, Attempts

__all__ = ["StepRunner", "error_type", "step_def"]

log = logging.getLogger("durable.worker")

CANCEL_GRACE = 1.0  # seconds a timed-out coroutine gets to end after its cancellation
LOOP_CHECK = 5.0  # seconds between two looks at the event loop while awaiting a step


class StepRunner:
    """Executes step attempts (see :meth:`run`), in the calling pool thread.

    - A sync step runs in that thread; with a ``timeout``, in a thread of its own that the
      pool thread waits for, up to the timeout.
    - An async step is awaited on the worker's event loop (``loop``, one per worker, in its
      own thread): the pool thread submits the attempt with
      ``asyncio.run_coroutine_threadsafe`` and waits for its outcome. So an async step in
      flight holds one pool thread, idle, like a sync step does, and the pool's
      ``concurrency`` threads bound sync and async steps together (200 async steps at once
      need ``concurrency=200``: 200 idle threads, cheap next to what the steps await). The
      loop itself never waits for anything but the steps' own awaits. With a ``timeout``,
      the coroutine is cancelled (``asyncio.CancelledError`` inside it), gets
      ``CANCEL_GRACE`` seconds to run its cleanup, and the attempt fails with
      ``TimeoutError``, retried like any failure.
    - Attempts never overlap: an attempt starts only when the previous attempt of the same
      step of the same run has ended, whatever its timeout said (``Attempts.begin``).

    A timed-out attempt whose code still runs (a sync step's thread, which Python cannot
    stop, or a coroutine that ignores its cancellation) is recorded as failed at once, but
    still counts against the worker's ``concurrency``: it keeps its slot until its code
    ends, so the number of steps executing in the worker never exceeds ``concurrency``
    and hung steps cannot pile up threads without bound. A warning names the step, when it
    timed out, and again (with how long it has overrun) while another attempt waits for it
    and when it finally ends. A worker whose every slot is taken by hung steps runs no
    other step until one ends; its logs say which.
    """

    def __init__(self, codec: Codec, loop: asyncio.AbstractEventLoop, attempts: Attempts) -> None:
        self._codec = codec
        self._loop = loop
        self.attempts = attempts

    def run(self, step: PendingStep) -> NewEvent:
        """Execute one attempt of ``step``; a ``step_completed``, ``step_attempt_failed``
        (retried later) or ``step_failed`` event, not numbered yet."""
        call = step.call
        definition, run_id = _registered(call)
        started = utcnow()
        try:
            if definition is None:
                raise DurableError(f"step {call.name!r} is not registered in this worker")
            if not definition.is_async and definition.timeout is None and not self.attempts.overrun:
                # The hot path: this thread is the attempt's slot, and the previous attempt
                # ended before this one was asked for (no timeout let it run on), so there is
                # nothing to wait for or to count.
                value = definition.fn(*call.args, **call.kwargs)
                return self.completed(step, value, started)
            key: Hashable = (run_id, step.pos, call.name) if run_id else (id(call), step.pos)
            attempt = self.attempts.begin(key, call.name, run_id or "?", step.attempt)
            if definition.is_async:
                value = self._await(definition, call, attempt)
            else:
                value = self._call(definition, call, attempt)
            return self.completed(step, value, started)
        except BaseException as exc:  # a step may raise anything; we record it
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return self.failure(step, definition, exc, started)

    def completed(
        self, step: PendingStep, value: Any, started_at: datetime | None = None
    ) -> NewEvent:
        """The event of an attempt that returned ``value`` (SerializationError if the codec
        cannot store it: the caller records that as a failed, not retried, attempt).
        ``started_at``: when the attempt began (the timeline's bar starts there)."""
        encoded = self._codec.encode(value)
        data = {"pos": step.pos, "name": step.call.name, "attempt": step.attempt, "result": encoded}
        if started_at is not None:
            data["started_at"] = started_at.isoformat()
        return NewEvent(0, EventType.STEP_COMPLETED, data, utcnow())

    # -- sync steps ------------------------------------------------------------------------

    def _call(self, definition: StepDef, call: StepCall, attempt: Attempt) -> Any:
        if definition.timeout is None:
            try:
                return definition.fn(*call.args, **call.kwargs)
            finally:
                self.attempts.end(attempt)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = definition.fn(*call.args, **call.kwargs)
            except BaseException as exc:
                box["error"] = exc
            finally:
                self.attempts.end(attempt)

        # the step's thread sees this one's context (the current span, for telemetry)
        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run, args=(target,), name=f"durable-step-{definition.name}", daemon=True
        )
        try:
            thread.start()
        except BaseException:
            self.attempts.end(attempt)
            raise
        thread.join(definition.timeout)
        if thread.is_alive():
            self.attempts.overrunning(attempt, definition.timeout, f"thread {thread.name}")
            raise TimeoutError(f"step {definition.name!r} timed out after {definition.timeout:g}s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    # -- async steps -----------------------------------------------------------------------

    def _await(self, definition: StepDef, call: StepCall, attempt: Attempt) -> Any:
        coro = self._attempt(definition, call, attempt)
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except BaseException:  # the loop is closed: the worker is going away
            coro.close()
            self.attempts.end(attempt)
            raise
        while True:
            try:
                return future.result(LOOP_CHECK)
            except _Carried as carried:
                raise carried.original from None
            except concurrent.futures.TimeoutError:
                if future.done():
                    raise  # the step's own TimeoutError
                if not self._loop.is_running():  # pragma: no cover - the loop died
                    future.cancel()
                    raise RuntimeError("the worker's event loop stopped") from None

    async def _attempt(self, definition: StepDef, call: StepCall, attempt: Attempt) -> Any:
        """On the loop: await the step, cancelling it at its timeout."""
        task = asyncio.ensure_future(self._guarded(definition, call, attempt))
        timeout = definition.timeout
        if timeout is None:
            return await task
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if done:
            return task.result()
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_GRACE)
        if task.done():
            _consume(task)
        else:
            task.add_done_callback(_consume)
            self.attempts.overrunning(attempt, timeout, "its coroutine ignores the cancellation")
        raise TimeoutError(f"step {definition.name!r} timed out after {timeout:g}s")

    async def _guarded(self, definition: StepDef, call: StepCall, attempt: Attempt) -> Any:
        try:
            return await definition.fn(*call.args, **call.kwargs)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our cancellation (a timeout, or the loop closing)
            raise _Carried(exc) from exc  # raised by the step itself: its failure
        except (KeyboardInterrupt, SystemExit) as exc:
            raise _Carried(exc) from exc  # never let them stop the loop
        finally:
            self.attempts.end(attempt)

    # -- outcomes --------------------------------------------------------------------------

    def failure(
        self,
        step: PendingStep,
        definition: StepDef | None,
        exc: BaseException,
        started_at: datetime | None = None,
    ) -> NewEvent:
        """The event of a failed attempt (see :func:`failure_event`), logged."""
        event = failure_event(step, definition, exc, utcnow(), started_at)
        if event.type == EventType.STEP_ATTEMPT_FAILED:
            log.info(
                "step %s attempt %d failed (%s); retrying at %s",
                step.call.name,
                step.attempt,
                event.data["message"],
                event.data["retry_at"],
            )
        return event


def failure_event(
    step: PendingStep,
    definition: StepDef | None,
    exc: BaseException,
    now: datetime,
    started_at: datetime | None = None,
) -> NewEvent:
    """The event of an attempt that raised ``exc`` at ``now``: retried by the step's
    policy (``step_attempt_failed`` with its ``retry_at``) or the step's end
    (``step_failed``). Pure: the worker and ``durable.testing.drive`` both record it."""
    kind = qualified_name(type(exc))
    if isinstance(exc, SerializationError):
        kind = "durable.SerializationError"
    message = str(exc) or type(exc).__name__
    retryable = (
        definition is not None
        and not isinstance(exc, SerializationError)
        and definition.retry.retries(exc, step.attempt)
    )
    base: dict[str, Any] = {
        "pos": step.pos,
        "name": step.call.name,
        "error_type": kind,
        "message": message,
    }
    if started_at is not None:
        base["started_at"] = started_at.isoformat()
    if retryable:
        assert definition is not None
        retry_at = now + timedelta(seconds=definition.retry.delay(step.attempt))
        data = {**base, "attempt": step.attempt, "retry_at": retry_at.isoformat()}
        return NewEvent(0, EventType.STEP_ATTEMPT_FAILED, data, now)
    return NewEvent(0, EventType.STEP_FAILED, {**base, "attempts": step.attempt}, now)


def _registered(call: StepCall) -> tuple[StepDef | None, str]:
    """The registered step of a call and the run that made it ("" if unknown)."""
    options = call.options
    if isinstance(options, StepOptions):
        return options.current, options.run_id
    if isinstance(options, StepDef):
        return options, ""
    return None, ""


def step_def(call: StepCall) -> StepDef | None:
    """The registered step of a call (None if this worker does not register it)."""
    return _registered(call)[0]


class _Carried(Exception):
    """Carries a BaseException that asyncio would treat specially out of the loop."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(repr(original))
        self.original = original


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a timed-out attempt's outcome, so asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()


def error_type(exc: BaseException) -> str:
    """The recorded type name of an exception that ended a run (``durable.X`` for ours)."""
    module = type(exc).__module__
    if module.startswith("durable.replay") or module.startswith("durable."):
        return f"durable.{type(exc).__qualname__}"
    return qualified_name(type(exc))
