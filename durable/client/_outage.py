"""Waiting out a database outage while a client waits for a run's result: one policy
(back off from 0.1 s to 2 s, give up with the caller's deadline) for the sync and the
async client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..store import DatabaseUnavailable

__all__ = ["Outage"]

log = logging.getLogger("durable")

T = TypeVar("T")

_FIRST, _LONGEST = 0.1, 2.0


class Outage:
    """Retries a read while the database is unavailable, until the caller's deadline."""

    def __init__(self, run_id: str, deadline: float | None, timeout: float | None) -> None:
        self._run_id = run_id
        self._deadline = deadline
        self._timeout = timeout

    def _pause(self, exc: DatabaseUnavailable, delay: float) -> float:
        """How long to wait before the next try (raises TimeoutError past the deadline)."""
        if self._deadline is not None and time.monotonic() + delay >= self._deadline:
            raise TimeoutError(
                f"run {self._run_id!r}: no result within {self._timeout:g}s; the "
                f"database was unavailable ({exc})"
            ) from exc
        log.info("waiting for run %s: %s; retrying in %.1fs", self._run_id, exc, delay)
        return delay

    def retry(self, read: Callable[[], T]) -> T:
        """``read()`` again while the database is unavailable."""
        delay = _FIRST
        while True:
            try:
                return read()
            except DatabaseUnavailable as exc:
                time.sleep(self._pause(exc, delay))
                delay = min(delay * 2, _LONGEST)

    async def aretry(self, read: Callable[[], Awaitable[T]]) -> T:
        """``await read()`` again while the database is unavailable."""
        delay = _FIRST
        while True:
            try:
                return await read()
            except DatabaseUnavailable as exc:
                await asyncio.sleep(self._pause(exc, delay))
                delay = min(delay * 2, _LONGEST)
