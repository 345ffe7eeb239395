"""Waiting for runs to end without busy polling.

One LISTEN connection per App, shared by every thread blocked in ``RunHandle.result()``:
a run's end notifies its id (only runs somebody watches notify), the listener wakes the
threads waiting for that id. Each waiter also re-checks the status every few seconds, so a
notification lost to a dropped connection costs latency, never correctness.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..replay.errors import DurableError
from ..store import Listener

log = logging.getLogger("durable")

__all__ = ["ResultWaiter"]


class ResultWaiter:
    """Dispatches end-of-run notifications to the threads waiting for them."""

    def __init__(self, listen: Callable[[], Listener]) -> None:
        self._listen = listen
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = {}
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._closed = threading.Event()

    def register(self, run_id: str) -> threading.Event:
        """An event set when ``run_id`` is reported ended (call before checking status)."""
        event = threading.Event()
        with self._lock:
            self._waiting.setdefault(run_id, set()).add(event)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="durable-results", daemon=True
                )
                self._thread.start()
        # Wait (briefly) until LISTEN is active, so no notification sent after our status
        # check can be missed; if the database is unreachable the poll still works.
        self._ready.wait(5.0)
        return event

    def unregister(self, run_id: str, event: threading.Event) -> None:
        """Stop waiting for ``run_id`` with this event."""
        with self._lock:
            events = self._waiting.get(run_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiting[run_id]

    def close(self) -> None:
        """Stop the listener thread."""
        self._closed.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _loop(self) -> None:
        failures = 0
        while not self._closed.is_set():
            try:
                listener = self._listen()
            except DurableError as exc:
                failures += 1
                delay = min(0.1 * 2**failures, 5.0)
                log.debug("result listener cannot connect (%s); retrying in %.1fs", exc, delay)
                self._closed.wait(delay)
                continue
            failures = 0
            with listener:
                self._ready.set()
                try:
                    while not self._closed.is_set():
                        for run_id in listener.wait(0.5):
                            self._wake(run_id)
                except DurableError as exc:
                    log.debug("result listener reconnecting after: %s", exc)
                    self._ready.clear()
                    self._wake_all()  # everyone re-checks; notifications may have been lost

    def _wake(self, run_id: str) -> None:
        with self._lock:
            events = list(self._waiting.get(run_id, ()))
        for event in events:
            event.set()

    def _wake_all(self) -> None:
        with self._lock:
            events = [e for group in self._waiting.values() for e in group]
        for event in events:
            event.set()
