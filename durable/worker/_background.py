"""The worker's background loops: heartbeats that keep its leases, and LISTEN for starts,
signals and nudges (a hint to claim or look at a held run at once; polling is the net)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from ..replay.errors import DurableError
from ..store import LeaseStore, Listener, WorkerBeat
from ._cache import EngineCache
from ._state import Activation, WorkerState

__all__ = ["heartbeat_loop", "listen_loop"]

log = logging.getLogger("durable.worker")


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
        kept = leases.heartbeat(list(held), lease_seconds)
    except DurableError as exc:
        log.warning("worker %s: heartbeat failed (%s)", state.worker_id, exc)
        return
    for token, act in held.items():
        if token not in kept and not act.done:
            log.warning("run %s: lease lost", act.run_id)
            act.lost = act.done = True  # its driver lets the engine go when it looks
            state.unhold(act)
            cache.drop(act.run_id)


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
                        with state.lock:
                            held = state.held.get(run_id)
                        if held is not None:
                            held.nudged = True
                            state.submit(tick, held)
                        else:
                            state.wake.set()
            except DurableError as exc:
                log.warning(
                    "worker %s: LISTEN connection lost (%s); reconnecting", state.worker_id, exc
                )
                state.wake.set()  # notifications may have been lost: look for work now
