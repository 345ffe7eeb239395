"""Time and randomness the runtime records: the current time and new run seeds.

``utcnow`` is the one clock of the runtime's Python side (timers, retry backoff, wake
times, timeouts of waits and runs); the database's ``now()`` is the other side of the
same clock. In production both are real time. ``durable.testing.TestEnv`` moves them
together: this module's skew here, the schema's virtual clock there (``store._clock``).
"""

from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime, timedelta

__all__ = ["new_run_id", "new_seed", "set_skew", "skew", "utcnow"]

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


class _Entropy:
    """Bytes from ``os.urandom``, fetched a few kilobytes at a time: one system call
    serves a hundred starts instead of two per start (under a busy worker each call that
    lets go of the GIL costs a wait to get it back). A forked child starts with an empty
    buffer, so parent and child never hand out the same bytes."""

    SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._at + n > len(self._buf):
                self._buf, self._at = os.urandom(self.SIZE), 0
            out = self._buf[self._at : self._at + n]
            self._at += n
            return out

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._buf, self._at = b"", 0


_entropy = _Entropy()
os.register_at_fork(after_in_child=_entropy.reset)


def new_seed() -> int:
    """A fresh seed for ``ctx.random()`` / ``ctx.uuid4()``, recorded in the log."""
    return int.from_bytes(_entropy.take(8)) >> 1  # 63 bits


def new_run_id() -> str:
    """A fresh run id: a random (version 4) UUID, as ``uuid.uuid4()`` makes."""
    return str(uuid.UUID(bytes=_entropy.take(16), version=4))
