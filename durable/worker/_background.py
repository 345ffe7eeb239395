"""The worker's background loops: heartbeats that keep its leases, LISTEN for starts,
signals and nudges (a hint to claim or look at a held run at once; polling is the net),
and the scheduler that fires due schedules."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from .._schedules import Schedule
from ..client._scheduling import Scheduling
from ..replay.errors import DurableError
from ..store import NEW_UNQUEUED, SCHEDULES_CHANGED, LeaseStore, Listener, Unit, WorkerBeat
from ._cache import EngineCache
from ._state import Activation, WorkerState

__all__ = ["heartbeat_loop", "listen_loop", "scheduler_loop"]

log = logging.getLogger("durable.worker")

#: the longest the scheduler sleeps between two looks at the schedules (a change made
#: elsewhere also wakes it, through the work channel)
SCHEDULER_IDLE = 30.0
#: how long it waits when a due schedule is being fired by another worker
SCHEDULER_BUSY = 0.2


def heartbeat_loop(
    state: WorkerState,
    leases: LeaseStore,
    cache: EngineCache,
    lease_seconds: float,
    beat: Callable[[int], WorkerBeat],
) -> None:
    """Every third of the lease: heartbeat the worker's row in the registry (``beat``
    says what to write, given the runs held), extend the leases of held runs, and forget
    the ones that were lost."""
    interval = max(lease_seconds / 3.0, 0.05)
    while True:
        with state.lock:
            held = {a.token: a for a in state.held.values()}
        try:
            leases.worker_beat(beat(len(held)))
        except DurableError as exc:
            log.warning("worker %s: registry heartbeat failed (%s)", state.worker_id, exc)
        if held:
            _extend(state, leases, cache, lease_seconds, held)
        if state.stopped.wait(interval):
            return


def _extend(
    state: WorkerState,
    leases: LeaseStore,
    cache: EngineCache,
    lease_seconds: float,
    held: dict[uuid.UUID, Activation],
) -> None:
    try:
        kept = leases.heartbeat([(a.run_id, token) for token, a in held.items()], lease_seconds)
    except DurableError as exc:
        log.warning("worker %s: heartbeat failed (%s)", state.worker_id, exc)
        return
    for token, act in held.items():
        if token in kept or act.done:
            continue
        # Under the run's lock: its driver may be between writing the run's release (which
        # is why the token is gone) and letting it go; marking it lost there would close
        # an engine the driver just put in the sticky cache. A driver busy for longer
        # finds out itself (its writes are fenced by the token), and the next beat looks
        # again, so one busy run does not hold up the other runs' beats.
        if not act.lock.acquire(timeout=0.2):
            continue
        try:
            if act.done:
                continue
            log.warning("run %s: lease lost", act.run_id)
            act.lost = act.done = True  # its driver lets the engine go when it looks
            state.unhold(act)
            cache.drop(act.run_id)
        finally:
            act.lock.release()


def listen_loop(
    state: WorkerState, listen: Callable[[], Listener], tick: Callable[[Activation], None]
) -> None:
    """Wake the claim loop (or the held run named) on each notification."""
    failures = 0
    while not state.stopped.is_set():
        try:
            listener = listen()
        except DurableError as exc:
            failures += 1
            delay = min(0.2 * 2**failures, 5.0)
            log.warning(
                "worker %s: cannot LISTEN (%s); retrying in %.1fs", state.worker_id, exc, delay
            )
            state.stopped.wait(delay)
            continue
        failures = 0
        with listener:
            try:
                while not state.stopped.is_set():
                    for run_id in listener.wait(0.5):
                        if run_id == SCHEDULES_CHANGED:
                            state.schedules_wake.set()
                            continue
                        if run_id == NEW_UNQUEUED:  # a start: nothing of a queue
                            state.wake.set()
                            continue
                        with state.lock:
                            held = state.held.get(run_id)
                        if held is not None:
                            held.nudged = True
                            state.submit(tick, held)
                        else:
                            state.queued_hint = True
                            state.wake.set()
            except DurableError as exc:
                log.warning(
                    "worker %s: LISTEN connection lost (%s); reconnecting", state.worker_id, exc
                )
                state.wake.set()  # notifications may have been lost: look for work now


def scheduler_loop(
    state: WorkerState,
    perform: Callable[[Unit[Any]], Any],
    scheduling: Scheduling,
    declarations: list[Schedule],
) -> None:
    """Write this worker's schedule declarations, then fire due schedules until the
    worker stops: look at the earliest ``due_at`` (one indexed statement, by the
    database's clock), sleep until then (at most ``SCHEDULER_IDLE`` seconds, or until a
    schedule changes), fire what is due (one transaction), and again."""
    pending = list(declarations)
    failures = 0
    while not state.stopping.is_set():
        wait: float | None
        try:
            while pending:
                perform(scheduling.put(pending[0]))
                pending.pop(0)
            wait = perform(scheduling.next_due_in())
            if wait is not None and wait <= 0:
                fired, refused = perform(scheduling.fire_due())
                for name, problem in refused:
                    log.error(
                        "worker %s: schedule %r cannot fire here (%s); looking at it again "
                        "in a minute",
                        state.worker_id,
                        name,
                        problem,
                    )
                if fired:
                    log.info("worker %s: started scheduled runs %s", state.worker_id, fired)
                    state.wake.set()  # the claim loop: new runs
                # Nothing fired: another worker holds the due schedule (it is firing it),
                # or it was refused; look again shortly rather than at once.
                wait = 0.0 if fired else SCHEDULER_BUSY
            failures = 0
        except Exception as exc:  # never let the scheduler thread die
            failures += 1
            wait = min(0.2 * 2**failures, 5.0)
            level = logging.WARNING if isinstance(exc, DurableError) else logging.ERROR
            log.log(
                level,
                "worker %s: scheduler: %s; retrying in %.1fs",
                state.worker_id,
                exc,
                wait,
                exc_info=not isinstance(exc, DurableError),
            )
        if wait is not None and wait <= 0:
            continue
        timeout = SCHEDULER_IDLE if wait is None else min(wait, SCHEDULER_IDLE)
        deadline = time.monotonic() + timeout
        while not state.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or state.schedules_wake.wait(min(left, 0.5)):
                break
        state.schedules_wake.clear()
