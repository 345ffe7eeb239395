"""Time and randomness the runtime records: the current time and new run seeds."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

__all__ = ["new_seed", "utcnow"]


def utcnow() -> datetime:
    """The current time, aware, UTC."""
    return datetime.now(UTC)


def new_seed() -> int:
    """A fresh seed for ``ctx.random()`` / ``ctx.uuid4()``, recorded in the log."""
    return secrets.randbits(63)
