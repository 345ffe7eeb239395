"""The worker: claims runs, replays them, executes their steps, records the results.

Threads: one claim loop (the thread that calls :meth:`Worker.run`), one heartbeat, one
LISTEN connection, a pool of ``concurrency`` threads that drive runs and execute steps,
and one asyncio event loop on which the async steps are awaited (the pool thread that
executes an async step waits for it). The collaborators are wired here, once:

    Claimer -> RunDriver -> (Inbox, Endings, StepRunner) -> Recorder -> store
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from types import FrameType
from typing import Protocol

from .._registry import Registry
from .._replayer import Replayer
from ..client import RunCreator
from ..client._scheduling import Scheduling
from ..replay.errors import DurableError
from ..store import Store, WorkerBeat
from ._attempts import Attempts
from ._background import heartbeat_loop, listen_loop, scheduler_loop
from ._cache import EngineCache
from ._claimer import Claimer
from ._driver import RunDriver
from ._endings import Endings
from ._inbox import Inbox
from ._loop import EventLoopThread
from ._recorder import Recorder
from ._state import WorkerState
from ._steps import StepRunner
from ._transact import TransactionalSteps

__all__ = ["Worker", "WorkerHost"]

log = logging.getLogger("durable.worker")


class WorkerHost(Protocol):
    """What a worker runs for: the App's store (opened on first use) and registry."""

    @property
    def store(self) -> Store: ...

    @property
    def registry(self) -> Registry: ...


class Worker:
    """Runs workflows. ``concurrency`` bounds the steps executing at once, sync and async
    together (a timed-out attempt whose code still runs counts until it ends).

    Options: ``lease_seconds`` (how long a claim lasts without a heartbeat; a crashed
    worker's runs are resumed after it), ``poll_interval`` (the safety-net poll; start and
    signal notifications usually wake the worker first), ``cache_size`` (live generators
    kept for runs that wait, so waking them costs no replay), ``claim_batch``,
    ``worker_id``.
    """

    def __init__(
        self,
        app: WorkerHost,
        *,
        concurrency: int = 16,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        cache_size: int = 1000,
        claim_batch: int = 32,
        worker_id: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._app = app
        self.concurrency = concurrency
        self.lease_seconds = float(lease_seconds)
        self.poll_interval = poll_interval
        self.cache_size = cache_size
        self.claim_batch = claim_batch
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._state = WorkerState(self.worker_id, concurrency, poll_interval)
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Worker:
        """Start in a background thread."""
        self._thread = threading.Thread(target=self.run, name="durable-worker", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float | None = 60.0) -> None:
        """Stop claiming, let running steps finish and be recorded, release leases."""
        self._state.stopping.set()
        self._state.wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _beat(self, runs_held: int) -> WorkerBeat:
        """What the worker writes in each heartbeat of the registry."""
        return WorkerBeat(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            lease_seconds=self.lease_seconds,
            concurrency=self.concurrency,
            workflows=sorted(self._app.registry.workflows),
            queues=self._app.registry.served_queues(),
            runs_held=runs_held,
        )

    def run(self, install_signal_handlers: bool = False) -> None:
        """Work until :meth:`stop` (or SIGINT/SIGTERM with ``install_signal_handlers``)."""
        state = self._state
        if install_signal_handlers and threading.current_thread() is threading.main_thread():

            def handler(signum: int, frame: FrameType | None) -> None:
                log.info("worker %s: signal %d, stopping gracefully", self.worker_id, signum)
                state.stopping.set()
                state.wake.set()

            signal.signal(signal.SIGINT, handler)
            signal.signal(signal.SIGTERM, handler)
        store = self._app.store  # resolve the DSN and migrate before anything else
        registry = self._app.registry
        codec = registry.codec
        cache = EngineCache(self.cache_size, state.close_later)
        group = store.group_appender()
        replayer = Replayer(registry)
        recorder = Recorder(store.leases, group, codec, state, cache, self.lease_seconds)
        inbox = Inbox(
            store.leases, RunCreator(store.runs, registry), store.db.perform, codec, state
        )
        endings = Endings(store.leases, group, codec, recorder, replayer, state)
        loop = EventLoopThread()
        loop.start()
        steps = StepRunner(codec, loop.loop, Attempts(self.concurrency, self.worker_id))
        transactional = TransactionalSteps(
            store.db,
            store.leases,
            recorder,
            steps,
            state,
            loop.loop,
            lease_seconds=self.lease_seconds,
            concurrency=self.concurrency,
        )
        driver = RunDriver(state, recorder, inbox, endings, steps, transactional)
        claimer = Claimer(
            store.leases,
            registry,
            replayer,
            cache,
            driver,
            state,
            lease_seconds=self.lease_seconds,
            claim_batch=self.claim_batch,
        )
        threads = [
            threading.Thread(
                target=heartbeat_loop,
                args=(state, store.leases, cache, self.lease_seconds, self._beat),
                name="durable-heartbeat",
                daemon=True,
            ),
            threading.Thread(target=state.closer_loop, name="durable-closer", daemon=True),
            threading.Thread(
                target=scheduler_loop,
                args=(
                    state,
                    store.db.perform,
                    Scheduling(store.schedules, RunCreator(store.runs, registry), registry),
                    list(registry.schedules.values()),
                ),
                name="durable-scheduler",
                daemon=True,
            ),
            threading.Thread(
                target=listen_loop,
                args=(state, lambda: store.listener(store.work_channel), driver.tick),
                name="durable-listen",
                daemon=True,
            ),
        ]
        for t in threads:
            t.start()
        log.info(
            "worker %s started (concurrency %d, workflows: %s)",
            self.worker_id,
            self.concurrency,
            ", ".join(sorted(registry.workflows)) or "none",
        )
        try:
            claimer.loop()
        finally:
            # From here on nothing new is submitted (stopping already keeps new steps from
            # starting); late timer ticks and notifications are dropped.
            state.shutdown()
            transactional.close()
            loop.stop()  # the pool is drained: nothing awaits an async step any more
            for attempt in steps.attempts.still_running():
                log.warning(
                    "worker %s: %s still runs %.1fs after its timeout; abandoned",
                    self.worker_id,
                    attempt.describe(),
                    attempt.overrun(),
                )
            claimer.release_all()
            state.stopped.set()
            group.close()
            try:
                store.leases.worker_gone(self.worker_id)
            except DurableError as exc:  # its row drops out after a lease anyway
                log.warning("worker %s: cannot leave the registry (%s)", self.worker_id, exc)
            cache.clear()
            with state.lock:
                held = list(state.held.values())
            for act in held:  # no thread drives them any more
                state.close_later(act.engine)
            state.stop_closer()
            for t in threads:
                t.join(timeout=5)
            log.info("worker %s stopped", self.worker_id)
