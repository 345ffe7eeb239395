"""The heartbeat and a driver letting a run go at the same moment.

A heartbeat that finds a lease gone because the driver has just written the run's
release must not mark the run lost: the driver is about to keep the run's live engine in
the sticky cache, and a lost run's engine is closed. A closed engine taken from the cache
by the next claim has nothing pending, so the run was let go "waiting with nothing to
wake it" again and again (seen in CI: a cancel's row locks delayed a heartbeat past the
driver's release).
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from durable.store import Claim
from durable.worker._background import _extend
from durable.worker._cache import EngineCache
from durable.worker._recorder import Recorder
from durable.worker._state import Activation, WorkerState


class FakeEngine:
    outcome = None
    last_seq = 3


class GoneLeases:
    """A lease store whose heartbeat finds every lease gone (the run was released)."""

    def __init__(self) -> None:
        self.asked = threading.Event()

    def heartbeat(self, held: Any, lease_seconds: float) -> set[uuid.UUID]:
        self.asked.set()
        return set()


def held_run() -> tuple[WorkerState, EngineCache, Recorder, Activation, list[Any]]:
    """A worker state holding one run, with its sticky cache and a recorder."""
    state = WorkerState("w", 1, 1.0)
    closed: list[Any] = []
    cache = EngineCache(10, closed.append)
    recorder = Recorder(None, None, None, state, cache, 5.0)  # type: ignore[arg-type]
    claim = Claim("run-1", "wf", uuid.uuid4(), 3, 1, None, False, None, None)
    act = Activation(claim, FakeEngine(), claim.token, 3, 1)  # type: ignore[arg-type]
    state.held[act.run_id] = act
    return state, cache, recorder, act, closed


def test_a_lease_released_while_the_heartbeat_looks_is_not_marked_lost() -> None:
    state, cache, recorder, act, closed = held_run()
    engine = act.engine
    leases = GoneLeases()

    with act.lock:  # the driver, between writing the release and letting the run go
        beat = threading.Thread(target=_extend, args=(state, leases, cache, 5.0, {act.token: act}))
        beat.start()
        assert leases.asked.wait(10)
        beat.join(10)  # it may give up waiting for the run's lock; it must not mark it
        assert not beat.is_alive()
        recorder.drop(act, keep_engine=True)

    assert not act.lost
    assert closed == []
    assert cache.take("run-1", 1, 3) is engine
    assert "run-1" not in state.held


def test_a_lease_really_lost_is_marked_and_its_engine_never_cached() -> None:
    state, cache, recorder, act, _closed = held_run()
    engine = act.engine

    _extend(state, GoneLeases(), cache, 5.0, {act.token: act})  # type: ignore[arg-type]
    assert act.lost and act.done and "run-1" not in state.held
    # a driver that was about to let it go waiting keeps nothing in the cache
    recorder.drop(act, keep_engine=True)
    assert cache.take("run-1", 1, 3) is None
    assert state._to_close.get_nowait() is engine  # handed to the closer thread
