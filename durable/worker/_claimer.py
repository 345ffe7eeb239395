"""The claim loop: lease runnable runs in batches, pair each with its engine (from the
sticky cache, else a fresh one) and hand it to the driver on a pool thread."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from .._registry import Registry
from .._replayer import Replayer
from ..replay import Engine, HistoryEvent
from ..replay.errors import DurableError
from ..store import Claim, LeaseStore
from ._cache import EngineCache
from ._driver import RunDriver
from ._state import Activation, WorkerState

__all__ = ["Claimer"]

log = logging.getLogger("durable.worker")


class Claimer:
    """Finds work for the worker (see the module doc)."""

    def __init__(
        self,
        leases: LeaseStore,
        registry: Registry,
        replayer: Replayer,
        cache: EngineCache,
        driver: RunDriver,
        state: WorkerState,
        *,
        lease_seconds: float,
        claim_batch: int,
    ) -> None:
        self._leases = leases
        self._registry = registry
        self._replayer = replayer
        self._cache = cache
        self._driver = driver
        self._state = state
        self._lease_seconds = lease_seconds
        self._claim_batch = claim_batch
        self._queued_at = 0.0  # monotonic time of the last queued claim

    def loop(self) -> None:
        """Claim and dispatch until the worker is stopping."""
        state = self._state
        workflows = sorted(self._registry.workflows)
        failures = 0
        while not state.stopping.is_set():
            pause = state.backoff_until - time.monotonic()
            if pause > 0:  # writes are failing: claim nothing more for now
                state.stopping.wait(pause)
                continue
            state.wake.clear()
            with state.lock:
                # Claim ahead, up to twice the concurrency, in batches: a claimed run waits
                # briefly for a thread (its lease is kept alive), and one claim statement
                # serves many runs instead of one claim per finished run.
                free = 2 * state.concurrency - state.busy
                busy = state.busy
            if free >= max(1, state.concurrency // 2) or (free > 0 and busy < state.concurrency):
                limit = min(free, self._claim_batch)
                try:
                    self._release_pending()
                    claimed = self._leases.claim(
                        state.worker_id, limit, self._lease_seconds, workflows
                    )
                    failures = 0
                except DurableError as exc:
                    failures += 1
                    delay = min(0.1 * 2**failures, 5.0)
                    log.warning(
                        "worker %s: cannot claim (%s); retrying in %.1fs",
                        state.worker_id,
                        exc,
                        delay,
                    )
                    state.stopping.wait(delay)
                    continue
                # the runs claimed go to work before the queues' claim is sent: a signal
                # or a start waits for one statement, not two
                if claimed:
                    self._dispatch(claimed)
                got = len(claimed)
                if got < limit and self._queues_worth_a_look():
                    queued = self._claim_queued(limit - got, workflows)
                    if queued:
                        self._dispatch(queued)
                    got += len(queued)
                if got == limit:
                    continue
            state.wake.wait(state.wait_time())

    def _queues_worth_a_look(self) -> bool:
        """Whether to run the queues' claim (a statement of its own) after the plain one:
        when a hint says a queue's run may wait (a notification other than "a new unqueued
        run", a queued run this worker let go, the last queued claim found runs), and at
        least once a poll interval (a timer, a rate window or another worker's slot)."""
        state = self._state
        hinted, state.queued_hint = state.queued_hint, False
        return hinted or time.monotonic() - self._queued_at >= state.poll_interval

    def _claim_queued(self, limit: int, workflows: list[str]) -> list[Claim]:
        """Runs of queues; an error here must not lose the unqueued runs just leased."""
        self._queued_at = time.monotonic()
        try:
            claimed = self._leases.claim_queued(
                self._state.worker_id,
                limit,
                self._lease_seconds,
                workflows,
                self._held_per_queue(),
            )
        except DurableError as exc:
            log.warning("worker %s: cannot claim queued runs (%s)", self._state.worker_id, exc)
            self._state.queued_hint = True
            return []
        if claimed:  # there may be more (the limit, or another queue's runs)
            self._state.queued_hint = True
        return claimed

    def _held_per_queue(self) -> dict[str, int]:
        """How many runs of each queue this worker holds (for worker_concurrency)."""
        held: dict[str, int] = {}
        with self._state.lock:
            for act in self._state.held.values():
                queue = act.claim.queue
                if queue is not None:
                    held[queue] = held.get(queue, 0) + 1
        return held

    def release_all(self) -> None:
        """Hand back every lease still held (at shutdown)."""
        with self._state.lock:
            held = list(self._state.held.values())
        for act in held:
            try:
                self._leases.release(act.run_id, act.token)
            except DurableError as exc:
                log.warning("run %s: cannot release its lease (%s)", act.run_id, exc)

    def _release_pending(self) -> None:
        state = self._state
        with state.lock:
            pending, state.to_release = state.to_release, []
        for i, (run_id, token, delay) in enumerate(pending):
            try:
                self._leases.release(run_id, token, delay=delay)
            except DurableError:
                with state.lock:
                    state.to_release.extend(pending[i:])
                raise

    def _dispatch(self, claims: list[Claim]) -> None:
        engines: dict[str, Engine] = {}
        after: dict[str, int] = {}
        for c in claims:
            if c.events is not None:
                continue  # never started: the claim brought its log along
            engine = self._cache.take(c.run_id, c.history_start, c.last_seq)
            if engine is not None:
                engines[c.run_id] = engine
                if engine.last_seq < c.last_seq:  # else nothing new to load
                    after[c.run_id] = engine.last_seq
            else:
                after[c.run_id] = c.history_start - 1
        try:
            loaded = self._leases.load_events(after) if after else {}
        except DurableError as exc:
            log.warning("worker %s: cannot load events (%s)", self._state.worker_id, exc)
            for c in claims:
                self._state.release_later(c.run_id, c.token, self._state.write_failed(c.run_id))
            for engine in engines.values():
                self._state.close_later(engine)
            return
        for c in claims:
            engine = engines.get(c.run_id) or self._replayer.engine(c.workflow, c.run_id)
            act = Activation(
                claim=c,
                engine=engine,
                token=c.token,
                last_seq=c.last_seq,
                history_start=c.history_start,
                nudged=c.nudged,
                deadline=self._deadline(c),
            )
            with self._state.lock:
                self._state.held[c.run_id] = act
            stored = c.events if c.events is not None else loaded.get(c.run_id, [])
            history = [HistoryEvent(e.seq, e.type, e.data, e.created_at) for e in stored]
            self._state.submit(self._driver.activate, act, history)

    def _deadline(self, claim: Claim) -> datetime | None:
        if not claim.timeout_unknown:
            return claim.deadline
        # Created by a process that did not register the workflow: this one does.
        timeout = self._registry.workflows[claim.workflow].timeout
        deadline = None
        if timeout and claim.created_at is not None:
            deadline = claim.created_at + timedelta(seconds=timeout)
        try:
            self._leases.set_timeout(claim.run_id, claim.token, timeout, deadline)
        except DurableError as exc:  # the run still times out while this worker holds it
            log.warning("run %s: cannot record its timeout (%s)", claim.run_id, exc)
        return deadline
