"""The sticky cache: live engines of runs that wait, so waking them costs no replay.

Bounded (LRU). Engines it lets go are handed to ``close_later``: closing one runs the
workflow's ``finally`` blocks (user code), which must run outside every lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from ..replay import Engine

__all__ = ["EngineCache"]


class EngineCache:
    """Engines by run id, each with the ``history_start`` of the history it replays."""

    def __init__(self, size: int, close_later: Callable[[Engine], None]) -> None:
        self._size = size
        self._close_later = close_later
        self._lock = threading.Lock()  # guards _engines only, never held while closing
        self._engines: OrderedDict[str, tuple[Engine, int]] = OrderedDict()

    def take(self, run_id: str, history_start: int, last_seq: int) -> Engine | None:
        """Remove and return the run's engine if it can go on from the log as it is
        (same history, not ahead of the log, still running); a stale one is closed."""
        with self._lock:
            cached = self._engines.pop(run_id, None)
        if cached is None:
            return None
        engine, start = cached
        if start == history_start and engine.last_seq <= last_seq and engine.outcome is None:
            return engine
        self._close_later(engine)
        return None

    def put(self, run_id: str, engine: Engine, history_start: int) -> None:
        """Keep an engine; closes the ones that fall out of the LRU."""
        evicted: list[Engine] = []
        with self._lock:
            old = self._engines.pop(run_id, None)
            if old is not None and old[0] is not engine:
                evicted.append(old[0])
            self._engines[run_id] = (engine, history_start)
            while len(self._engines) > self._size:
                evicted.append(self._engines.popitem(last=False)[1][0])
        for stale in evicted:
            self._close_later(stale)

    def drop(self, run_id: str) -> None:
        """Forget (and close) the run's engine, if cached."""
        with self._lock:
            cached = self._engines.pop(run_id, None)
        if cached is not None:
            self._close_later(cached[0])

    def clear(self) -> None:
        """Let every cached engine go."""
        with self._lock:
            engines = [e for e, _ in self._engines.values()]
            self._engines.clear()
        for engine in engines:
            self._close_later(engine)

    def __len__(self) -> int:
        with self._lock:
            return len(self._engines)
