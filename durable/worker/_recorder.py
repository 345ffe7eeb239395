"""Writing a held run's progress: numbering events, feeding the engine what this worker
produced, the engine's markers, and the fenced append (group-committed when the lease is
kept). Also letting a run go (``drop``)."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from .._codec import Codec
from .._errors import SerializationError
from ..replay import HistoryEvent
from ..replay.vocabulary import EventType, RunStatus
from ..store import (
    ConflictError,
    GroupAppender,
    LeaseStore,
    Mode,
    NewEvent,
    RunNotFound,
    StoreError,
)
from ._cache import EngineCache
from ._state import Activation, Lost, WorkerState

__all__ = ["Recorder"]

log = logging.getLogger("durable.worker")


class Recorder:
    """Appends to the log of the runs a worker holds (see the module doc)."""

    def __init__(
        self,
        leases: LeaseStore,
        group: GroupAppender,
        codec: Codec,
        state: WorkerState,
        cache: EngineCache,
        lease_seconds: float,
    ) -> None:
        self._leases = leases
        self._group = group
        self._codec = codec
        self._state = state
        self._cache = cache
        self._lease_seconds = lease_seconds

    def numbered(self, act: Activation, events: list[NewEvent]) -> list[NewEvent]:
        """``events`` numbered after the run's last written seq."""
        return [
            NewEvent(act.last_seq + i, e.type, e.data, e.created_at)
            for i, e in enumerate(events, start=1)
        ]

    def feed_live(self, act: Activation, produced: list[NewEvent]) -> None:
        """Feed events this worker made to the engine before they are written (they are
        numbered now; :meth:`write` must write exactly these, or drop the engine)."""
        pending_feed = [e for e in produced if e.seq == 0]
        if not pending_feed:
            return
        base = act.engine.last_seq
        numbered = [
            NewEvent(base + i, e.type, e.data, e.created_at)
            for i, e in enumerate(pending_feed, start=1)
        ]
        act.engine.feed(
            [HistoryEvent(e.seq, e.type, e.data, e.created_at) for e in numbered], replaying=False
        )
        # replace the unnumbered events in place so the caller writes the numbered ones
        it = iter(numbered)
        produced[:] = [next(it) if e.seq == 0 else e for e in produced]

    def markers(self, act: Activation, now: datetime) -> list[NewEvent]:
        """The engine's patch markers and custom statuses as events (fed to it too, so
        its seq stays in step with the log)."""
        out: list[NewEvent] = []
        for type_, data in act.engine.take_markers():
            if type_ == EventType.STATUS_SET:
                try:
                    value = self._codec.encode(data.get("value"))
                except SerializationError as exc:
                    log.error(
                        "run %s: ctx.set_status(...) got a value it cannot store: %s",
                        act.run_id,
                        exc,
                    )
                    value = f"(not stored: {exc})"
                act.custom_status = value
                act.set_custom = True
                data = {"value": value}
            out.append(NewEvent(act.engine.last_seq + len(out) + 1, type_, data, now))
        if out:
            act.engine.feed(
                [HistoryEvent(e.seq, e.type, e.data, e.created_at) for e in out], replaying=False
            )
        return out

    def write(
        self,
        act: Activation,
        produced: list[NewEvent],
        mode: Mode,
        now: datetime,
        *,
        status: RunStatus = RunStatus.RUNNING,
        wake_at: datetime | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Append ``produced`` (already fed) plus pending markers and move the run's
        projection (``mode``). Held-lease appends go through the group commit. Raises
        :class:`Lost` when the write is refused or the database is away."""
        events = self.numbered(act, list(produced) + self.markers(act, now))
        if not events and mode == "hold":
            return
        give_up = time.monotonic() + self._lease_seconds / 2
        delay = 0.05
        while True:
            try:
                nudged, wake_now = self._append(act, events, mode, status, wake_at, error)
                break
            except (ConflictError, RunNotFound) as exc:  # the lease or the log moved on
                log.warning("run %s: cannot record progress (%s); letting it go", act.run_id, exc)
                raise Lost from exc
            except StoreError as exc:
                # The database is away, out of connections, or refused the statement.
                # Keep what the run produced (a step's result) and try again while the
                # lease lasts: the step must not run again only because its result could
                # not be written yet. Then let the run go, for longer each time.
                if act.done or time.monotonic() + delay > give_up:
                    backoff = self._state.write_failed(act.run_id)
                    log.warning(
                        "run %s: cannot record progress (%s); letting it go for %.1fs",
                        act.run_id,
                        exc,
                        backoff,
                    )
                    self._state.release_later(act.run_id, act.token, backoff)
                    raise Lost from exc
                log.info("run %s: cannot record progress yet (%s); retrying", act.run_id, exc)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        self._state.write_succeeded(act.run_id)
        act.set_custom = False
        if events:
            act.last_seq = events[-1].seq
        act.nudged = act.nudged or nudged
        if mode == "release" and wake_now:
            self._state.wake.set()

    def _append(
        self,
        act: Activation,
        events: list[NewEvent],
        mode: Mode,
        status: RunStatus,
        wake_at: datetime | None,
        error: dict[str, Any] | None,
    ) -> tuple[bool, bool]:
        if mode == "hold":
            nudged = self._group.append(
                act.run_id, act.token, act.last_seq, events, act.custom_status, act.set_custom
            )
            return nudged, False
        result = self._leases.append(
            run_id=act.run_id,
            token=act.token,
            expected_seq=act.last_seq,
            events=events,
            mode=mode,
            status=status,
            lease_seconds=self._lease_seconds,
            wake_at=wake_at,
            custom_status=act.custom_status,
            set_custom=act.set_custom,
            error=error,
            set_error=error is not None or mode == "finish",
        )
        return result.nudged, result.wake_now

    def drop(self, act: Activation, *, keep_engine: bool = False) -> None:
        """Let the run go; keep its live engine in the cache if it only waits."""
        act.done = True
        self._state.unhold(act)
        if keep_engine and not act.lost and act.engine.outcome is None:
            self._cache.put(act.run_id, act.engine, act.history_start)
        else:
            self._cache.drop(act.run_id)
            self._state.close_later(act.engine)
