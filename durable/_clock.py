"""Time and randomness the runtime records: the current time and new run seeds.

``utcnow`` is the one clock of the runtime's Python side (timers, retry backoff, wake
times, timeouts of waits and runs); the database's ``now()`` is the other side of the
same clock. In production both are real time. ``durable.testing.TestEnv`` moves them
together: this module's skew here, the schema's virtual clock there (``store._clock``).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

__all__ = ["new_seed", "set_skew", "skew", "utcnow"]

_skew = timedelta(0)


def utcnow() -> datetime:
    """The current time, aware, UTC (plus the test env's skew, if one runs)."""
    return datetime.now(UTC) + _skew


def skew() -> timedelta:
    """How far the clock is ahead of real time (zero outside a test env)."""
    return _skew


def set_skew(value: timedelta) -> None:
    """Set the skew (the test env only: a process has one clock)."""
    global _skew
    _skew = value


def new_seed() -> int:
    """A fresh seed for ``ctx.random()`` / ``ctx.uuid4()``, recorded in the log."""
    return secrets.randbits(63)
