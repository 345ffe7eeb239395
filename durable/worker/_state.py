"""What the worker's collaborators share: the runs it holds, its pool of threads, its
wake-up hints, and the runs to hand back to the database.

``WorkerState.lock`` guards ``held``, ``busy``, ``to_release``, ``next_wake``,
``shut_down`` and the write-failure counts; it is held only for a few dictionary
operations, never across I/O or user code. Each run has its own ``Activation.lock``
(held while the run is driven).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._clock import utcnow
from ..replay import Engine
from ..store import Claim

__all__ = ["Activation", "Lost", "WorkerState"]

log = logging.getLogger("durable.worker")


@dataclass(eq=False)
class Activation:
    """A run whose lease this worker holds."""

    claim: Claim
    engine: Engine
    token: uuid.UUID
    last_seq: int
    history_start: int
    lock: threading.RLock = field(default_factory=threading.RLock)
    in_flight: set[int] = field(default_factory=set)
    checked_waits: set[int] = field(default_factory=set)
    nudged: bool = False
    paused: bool = False
    done: bool = False
    ready: bool = False  # its log was fed: a tick (a nudge) may drive it from now on
    lost: bool = False  # the heartbeat found the lease gone (done is set too)
    custom_status: Any = None
    set_custom: bool = False
    tick_at: datetime | None = None
    deadline: datetime | None = None

    @property
    def run_id(self) -> str:
        return self.claim.run_id


class Lost(Exception):
    """The activation can no longer write (lease lost or the database went away)."""


class WorkerState:
    """Shared state of one worker (see the module doc)."""

    def __init__(self, worker_id: str, concurrency: int, poll_interval: float) -> None:
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.lock = threading.Lock()
        self.held: dict[str, Activation] = {}
        self.busy = 0  # pool tasks submitted and not finished
        self.to_release: list[tuple[str, uuid.UUID, float]] = []  # (run, lease, delay)
        self._run_failures: dict[str, int] = {}  # consecutive failed writes, per run
        self._worker_failures = 0  # consecutive failed writes of this worker
        self.backoff_until = 0.0  # monotonic time before which the worker claims nothing
        self.next_wake: float | None = None
        self.shut_down = False
        self._to_close: queue.SimpleQueue[Engine | None] = queue.SimpleQueue()
        self.wake = threading.Event()  # the claim loop: look for work now
        # runs of a queue may be there to claim (see Claimer): set by a notification that
        # does not say "a new unqueued run", and by a queued run this worker let go
        self.queued_hint = True
        self.schedules_wake = threading.Event()  # the scheduler: a schedule changed
        self.stopping = threading.Event()  # stop() was called: claim nothing new
        self.stopped = threading.Event()  # the claim loop has ended
        self._executor = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="durable-step"
        )

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on a pool thread (dropped once the worker shut down)."""
        with self.lock:
            if self.shut_down:
                return  # a late timer tick after stop(): the lease will be re-claimed
            self.busy += 1

        def task() -> None:
            try:
                fn(*args)
            except Exception:  # pragma: no cover - a bug in the worker itself
                log.exception("worker %s: unexpected error", self.worker_id)
            finally:
                with self.lock:
                    self.busy -= 1
                self.wake.set()

        self._executor.submit(task)

    def shutdown(self) -> None:
        """Submit nothing more and wait for the pool's tasks to finish."""
        with self.lock:
            self.shut_down = True
        self._executor.shutdown(wait=True)

    def release_later(self, run_id: str, token: uuid.UUID, delay: float = 0.0) -> None:
        """Hand the lease back with the next claim (the database may be away now); the
        run is claimable again ``delay`` seconds after that."""
        with self.lock:
            self.to_release.append((run_id, token, delay))

    def write_failed(self, run_id: str) -> float:
        """Count a write of ``run_id`` that could not be made: the worker claims nothing
        for a while (growing with its consecutive failures, up to 5 s), and the run is
        let go for longer each time (returned, up to 30 s), so a database short of
        connections is not hammered and no step runs again in a tight loop."""
        with self.lock:
            runs = self._run_failures[run_id] = self._run_failures.get(run_id, 0) + 1
            self._worker_failures += 1
            pause = min(0.1 * 2 ** min(self._worker_failures, 6), 5.0)
            self.backoff_until = max(self.backoff_until, time.monotonic() + pause)
        return float(min(0.5 * 2 ** min(runs - 1, 6), 30.0))

    def write_succeeded(self, run_id: str) -> None:
        """A write of ``run_id`` went through: its failure counts start over."""
        if self._run_failures or self._worker_failures:  # the common case takes no lock
            with self.lock:
                self._run_failures.pop(run_id, None)
                self._worker_failures = 0

    def close_later(self, engine: Engine) -> None:
        """Have ``engine`` closed by the closer thread: closing runs the workflow's
        ``finally`` blocks (user code, maybe slow), so never under a lock or in a loop
        that claims or heartbeats."""
        self._to_close.put(engine)

    def closer_loop(self) -> None:
        """The closer thread: close let-go engines until :meth:`stop_closer`."""
        while True:
            engine = self._to_close.get()
            if engine is None:
                return
            try:
                engine.close()
            except Exception:  # pragma: no cover - Engine.close swallows user errors
                log.exception("worker %s: closing an engine failed", self.worker_id)

    def stop_closer(self) -> None:
        """Let the closer thread finish what it was given, then end."""
        self._to_close.put(None)

    def unhold(self, act: Activation) -> None:
        """Forget a run this worker held. For a run of a queue, the claim loop looks at
        once: a slot of the queue (or the worker's room in it) may have come free."""
        with self.lock:
            if self.held.get(act.run_id) is act:
                del self.held[act.run_id]
        if act.claim.queue is not None:
            self.queued_hint = True
            self.wake.set()

    def note_wake(self, at: datetime | None) -> None:
        """Have the claim loop look again at ``at`` (if sooner than its next poll)."""
        if at is None:
            return
        delay = (at - utcnow()).total_seconds()
        if delay > self.poll_interval:
            return
        mono = time.monotonic() + max(delay, 0.0)
        with self.lock:
            if self.next_wake is None or mono < self.next_wake:
                self.next_wake = mono
        if delay <= 0:
            self.wake.set()

    def wait_time(self) -> float:
        """How long the claim loop may sleep before it looks for work again."""
        wait = self.poll_interval
        with self.lock:
            if self.next_wake is not None:
                wait = min(wait, max(0.0, self.next_wake - time.monotonic()))
                self.next_wake = None
        return max(wait, 0.001)
