"""Running one attempt of a step and describing its outcome as an event."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from .._clock import utcnow
from .._codec import Codec, qualified_name
from .._errors import SerializationError
from .._registry import StepDef
from ..replay import PendingStep
from ..replay.errors import DurableError
from ..replay.vocabulary import EventType
from ..store import NewEvent

__all__ = ["StepRunner", "error_type"]

log = logging.getLogger("durable.worker")


class StepRunner:
    """Executes step attempts in the calling thread (see :meth:`run`)."""

    def __init__(self, codec: Codec) -> None:
        self._codec = codec

    def run(self, step: PendingStep) -> NewEvent:
        """Execute one attempt of ``step``; a ``step_completed``, ``step_attempt_failed``
        (retried later) or ``step_failed`` event, not numbered yet."""
        call = step.call
        definition: StepDef | None = call.options
        try:
            if definition is None:
                raise DurableError(f"step {call.name!r} is not registered in this worker")
            value = _call_with_timeout(definition, call.args, call.kwargs)
            encoded = self._codec.encode(value)
        except BaseException as exc:  # a step may raise anything; we record it
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return self._failure(step, definition, exc)
        data = {"pos": step.pos, "name": call.name, "attempt": step.attempt, "result": encoded}
        return NewEvent(0, EventType.STEP_COMPLETED, data, utcnow())

    def _failure(
        self, step: PendingStep, definition: StepDef | None, exc: BaseException
    ) -> NewEvent:
        now = utcnow()
        kind = qualified_name(type(exc))
        if isinstance(exc, SerializationError):
            kind = "durable.SerializationError"
        message = str(exc) or type(exc).__name__
        retryable = (
            definition is not None
            and not isinstance(exc, SerializationError)
            and definition.retry.retries(exc, step.attempt)
        )
        base = {"pos": step.pos, "name": step.call.name, "error_type": kind, "message": message}
        if retryable:
            assert definition is not None
            retry_at = now + timedelta(seconds=definition.retry.delay(step.attempt))
            log.info(
                "step %s attempt %d failed (%s); retrying at %s",
                step.call.name,
                step.attempt,
                message,
                retry_at.isoformat(),
            )
            data = {**base, "attempt": step.attempt, "retry_at": retry_at.isoformat()}
            return NewEvent(0, EventType.STEP_ATTEMPT_FAILED, data, now)
        return NewEvent(0, EventType.STEP_FAILED, {**base, "attempts": step.attempt}, now)


def _call_with_timeout(definition: StepDef, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if definition.timeout is None:
        return definition.fn(*args, **kwargs)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = definition.fn(*args, **kwargs)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"durable-step-{definition.name}", daemon=True)
    thread.start()
    thread.join(definition.timeout)
    if thread.is_alive():
        raise TimeoutError(f"step {definition.name!r} timed out after {definition.timeout:g}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def error_type(exc: BaseException) -> str:
    """The recorded type name of an exception that ended a run (``durable.X`` for ours)."""
    module = type(exc).__module__
    if module.startswith("durable.replay") or module.startswith("durable."):
        return f"durable.{type(exc).__qualname__}"
    return qualified_name(type(exc))
