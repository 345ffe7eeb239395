"""The step attempts whose code is running in this worker, and the slots they take.

Every attempt takes one of ``concurrency`` slots before its code starts and gives it back
when its code has ended: returned, raised, or (an async step) finished after its
cancellation. An attempt that timed out has been recorded as failed, but Python cannot
stop a thread, nor force a coroutine that ignores its cancellation to end; such an
*overrunning* attempt keeps its slot until its code really ends, so ``concurrency`` keeps
bounding the user code running at once, and a warning names it. The next attempt of the
same step of the same run waits for it: attempts of one step never overlap in this
worker (across workers, a lost lease can still make them overlap: at-least-once).

``Attempts._lock`` guards ``_live``, for a few dictionary operations only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field

__all__ = ["Attempt", "Attempts"]

log = logging.getLogger("durable.worker")

WARN_EVERY = 30.0  # seconds between two warnings about the same wait


@dataclass(eq=False)
class Attempt:
    """One attempt whose code runs (or is about to run) in this worker."""

    key: Hashable
    step: str
    run_id: str
    number: int
    started: float = field(default_factory=time.monotonic)
    timed_out_at: float | None = None  # monotonic time its timeout passed, if it did
    finished: bool = False  # its code ended (guarded by Attempts._lock)
    ended: threading.Event = field(default_factory=threading.Event)  # set after finished

    def describe(self) -> str:
        return f"step {self.step!r} (run {self.run_id}, attempt {self.number})"

    def overrun(self) -> float:
        """Seconds since its timeout passed (0 if it did not)."""
        if self.timed_out_at is None:
            return 0.0
        return time.monotonic() - self.timed_out_at


class Attempts:
    """The live attempts of one worker and its ``concurrency`` slots (see the module doc)."""

    def __init__(self, concurrency: int, worker_id: str = "") -> None:
        self._slots = threading.Semaphore(concurrency)
        self._lock = threading.Lock()
        self._live: dict[Hashable, Attempt] = {}
        self._overrunning: set[Attempt] = set()
        self._worker = worker_id

    def begin(self, key: Hashable, step: str, run_id: str, number: int) -> Attempt:
        """Wait until the previous attempt with ``key`` (same run, same step) has ended and
        a slot is free; take the slot and return the new attempt. Called by a pool thread
        before the attempt's code starts; :meth:`end` must follow, from any thread."""
        attempt = Attempt(key, step, run_id, number)
        while True:
            with self._lock:
                previous = self._live.get(key)
                if previous is None:
                    self._live[key] = attempt
                    break
            self._wait_for(previous, attempt)
        self._take_slot(attempt)
        attempt.started = time.monotonic()
        return attempt

    def end(self, attempt: Attempt) -> None:
        """The attempt's code has ended: free its slot and let the next attempt start."""
        with self._lock:
            attempt.finished = True
            if self._live.get(attempt.key) is attempt:
                del self._live[attempt.key]
            overran = attempt in self._overrunning
            self._overrunning.discard(attempt)
        self._slots.release()
        attempt.ended.set()
        if overran:
            log.warning(
                "%s ended %.1fs after its timeout; its slot is free again",
                attempt.describe(),
                attempt.overrun(),
            )

    @property
    def overrun(self) -> bool:
        """Whether some attempt runs past its timeout (its code still holds a slot)."""
        return bool(self._overrunning)  # a read without the lock: a hint, re-checked by begin

    def overrunning(self, attempt: Attempt, timeout: float, how: str) -> None:
        """The attempt's timeout passed and its code still runs (``how``: where)."""
        attempt.timed_out_at = attempt.started + timeout
        with self._lock:
            if attempt.finished:
                return
            self._overrunning.add(attempt)
        log.warning(
            "%s timed out after %gs and was recorded as failed, but its code still runs "
            "(%s): it keeps one slot of the worker's concurrency until it ends, and the "
            "step's next attempt waits for it",
            attempt.describe(),
            timeout,
            how,
        )

    def still_running(self) -> list[Attempt]:
        """The attempts that overran their timeout and have not ended (oldest first)."""
        with self._lock:
            return sorted(self._overrunning, key=lambda a: a.started)

    def _wait_for(self, previous: Attempt, attempt: Attempt) -> None:
        while not previous.ended.is_set():
            if previous.timed_out_at is None:
                how = f"started {time.monotonic() - previous.started:.1f}s ago"
            else:
                how = f"{previous.overrun():.1f}s past its timeout"
            log.warning(
                "attempt %d of step %r (run %s) waits for attempt %d, still running (%s)",
                attempt.number,
                attempt.step,
                attempt.run_id,
                previous.number,
                how,
            )
            previous.ended.wait(WARN_EVERY)

    def _take_slot(self, attempt: Attempt) -> None:
        if self._slots.acquire(blocking=False):
            return
        # Every slot is taken while this pool thread wants one: some attempts overran
        # their timeouts (the pool has exactly ``concurrency`` threads).
        while True:
            stuck = self.still_running()
            log.warning(
                "worker %s: %s waits for a free slot; taken by attempts running past "
                "their timeouts: %s",
                self._worker,
                attempt.describe(),
                ", ".join(f"{a.describe()} (+{a.overrun():.1f}s)" for a in stuck) or "none",
            )
            if self._slots.acquire(timeout=WARN_EVERY):
                return
