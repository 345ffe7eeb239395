"""The worker: claims runs, replays them, executes their steps, records the results.

Threads: one claim loop, one heartbeat, one LISTEN connection (a hint to claim at once),
and a pool of ``concurrency`` threads that drive runs and execute steps. A run is driven by
whichever pool thread has news for it (a claim, a step result) under the run's own lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

import psycopg

from ._codec import qualified_name
from ._ending import EndingMixin
from ._inbox import InboxMixin
from ._runstate import Activation, Mode, _call_with_timeout, _Lost, _now
from .replay import (
    Engine,
    HistoryEvent,
    PendingStep,
    PendingTimer,
    PendingWait,
    TimedOut,
)
from .replay.errors import (
    ConflictError,
    DatabaseUnavailable,
    DurableError,
    SerializationError,
    StoreError,
)
from .store import Claim, NewEvent
from .store._group import GroupAppender

if TYPE_CHECKING:
    from ._app import App
    from ._handle import StepDef

log = logging.getLogger("durable.worker")


class Worker(InboxMixin, EndingMixin):
    """Runs workflows. ``concurrency`` bounds the steps executing at once.

    Options: ``lease_seconds`` (how long a claim lasts without a heartbeat; a crashed
    worker's runs are resumed after it), ``poll_interval`` (the safety-net poll; start and
    signal notifications usually wake the worker first), ``cache_size`` (live generators
    kept for runs that wait, so waking them costs no replay), ``worker_id``.
    """

    def __init__(
        self,
        app: App,
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
        self.app = app
        self.concurrency = concurrency
        self.lease_seconds = float(lease_seconds)
        self.poll_interval = poll_interval
        self.cache_size = cache_size
        self.claim_batch = claim_batch
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._executor = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="durable-step"
        )
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._state_lock = threading.Lock()
        self._busy = 0  # pool tasks submitted and not finished
        self._held: dict[str, Activation] = {}
        self._cache: OrderedDict[str, tuple[Engine, int]] = OrderedDict()
        self._next_wake: float | None = None
        self._to_release: list[tuple[str, uuid.UUID]] = []
        self._threads: list[threading.Thread] = []
        self._thread: threading.Thread | None = None
        self._workflow_names: list[str] = []
        self._shut_down = False
        self._group = GroupAppender(app.store)

    # -- lifecycle -----------------------------------------------------------------

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
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def run(self, install_signal_handlers: bool = False) -> None:
        """Work until :meth:`stop` (or SIGINT/SIGTERM with ``install_signal_handlers``)."""
        if install_signal_handlers and threading.current_thread() is threading.main_thread():

            def handler(signum: int, frame: FrameType | None) -> None:
                log.info("worker %s: signal %d, stopping gracefully", self.worker_id, signum)
                self._stopping.set()
                self._wake.set()

            signal.signal(signal.SIGINT, handler)
            signal.signal(signal.SIGTERM, handler)
        store = self.app.store  # resolve the DSN and migrate before anything else
        for target, name in ((self._heartbeat_loop, "heartbeat"), (self._listen_loop, "listen")):
            t = threading.Thread(target=target, name=f"durable-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self._workflow_names = sorted(self.app.workflows)
        log.info(
            "worker %s started (concurrency %d, workflows: %s)",
            self.worker_id,
            self.concurrency,
            ", ".join(self._workflow_names) or "none",
        )
        try:
            self._claim_loop()
        finally:
            with self._state_lock:
                # From here on nothing new is submitted (stopping already keeps new steps
                # from starting); late timer ticks and notifications are dropped.
                self._shut_down = True
            self._executor.shutdown(wait=True)
            with self._state_lock:
                held = list(self._held.values())
            for act in held:
                with contextlib.suppress(DurableError):
                    store.release(act.run_id, act.token)
            self._stopped.set()
            for t in self._threads:
                t.join(timeout=5)
            self._group.close()
            log.info("worker %s stopped", self.worker_id)

    # -- claiming ------------------------------------------------------------------

    def _claim_loop(self) -> None:
        store = self.app.store
        failures = 0
        while not self._stopping.is_set():
            self._wake.clear()
            with self._state_lock:
                # Claim ahead, up to twice the concurrency, in batches: a claimed run waits
                # briefly for a thread (its lease is kept alive), and one claim statement
                # serves many runs instead of one claim per finished run.
                free = 2 * self.concurrency - self._busy
                busy = self._busy
            claimed: list[Claim] = []
            if free >= max(1, self.concurrency // 2) or (free > 0 and busy < self.concurrency):
                try:
                    self._release_pending()
                    claimed = store.claim(
                        self.worker_id,
                        min(free, self.claim_batch),
                        self.lease_seconds,
                        self._workflow_names,
                    )
                    failures = 0
                except DurableError as exc:
                    failures += 1
                    delay = min(0.1 * 2**failures, 5.0)
                    log.warning(
                        "worker %s: cannot claim (%s); retrying in %.1fs",
                        self.worker_id,
                        exc,
                        delay,
                    )
                    self._stopping.wait(delay)
                    continue
                if claimed:
                    self._dispatch(claimed)
                    if len(claimed) == min(free, self.claim_batch):
                        continue
            self._wake.wait(self._wait_time())

    def _wait_time(self) -> float:
        wait = self.poll_interval
        with self._state_lock:
            if self._next_wake is not None:
                wait = min(wait, max(0.0, self._next_wake - time.monotonic()))
                self._next_wake = None
        return max(wait, 0.001)

    def _note_wake(self, at: datetime | None) -> None:
        if at is None:
            return
        delay = (at - _now()).total_seconds()
        if delay > self.poll_interval:
            return
        mono = time.monotonic() + max(delay, 0.0)
        with self._state_lock:
            if self._next_wake is None or mono < self._next_wake:
                self._next_wake = mono
        if delay <= 0:
            self._wake.set()

    def _release_pending(self) -> None:
        with self._state_lock:
            pending, self._to_release = self._to_release, []
        for i, (run_id, token) in enumerate(pending):
            try:
                self.app.store.release(run_id, token)
            except DurableError:
                with self._state_lock:
                    self._to_release.extend(pending[i:])
                raise

    def _dispatch(self, claims: list[Claim]) -> None:
        store = self.app.store
        engines: dict[str, Engine] = {}
        after: dict[str, int] = {}
        with self._state_lock:
            for c in claims:
                if c.events is not None:
                    continue  # never started: the claim brought its log along
                cached = self._cache.pop(c.run_id, None)
                if (
                    cached is not None
                    and cached[1] == c.history_start
                    and cached[0].last_seq <= c.last_seq
                    and cached[0].outcome is None
                ):
                    engines[c.run_id] = cached[0]
                    if cached[0].last_seq < c.last_seq:  # else nothing new to load
                        after[c.run_id] = cached[0].last_seq
                else:
                    after[c.run_id] = c.history_start - 1
        try:
            loaded = store.load_events(after) if after else {}
        except DurableError as exc:
            log.warning("worker %s: cannot load events (%s)", self.worker_id, exc)
            with self._state_lock:
                self._to_release.extend((c.run_id, c.token) for c in claims)
            return
        for c in claims:
            engine = engines.get(c.run_id) or self._new_engine(c)
            act = Activation(
                claim=c,
                engine=engine,
                token=c.token,
                last_seq=c.last_seq,
                history_start=c.history_start,
                nudged=c.nudged,
            )
            with self._state_lock:
                self._held[c.run_id] = act
            stored = c.events if c.events is not None else loaded.get(c.run_id, [])
            history = [HistoryEvent(e.seq, e.type, e.data, e.created_at) for e in stored]
            self._submit(self._activate, act, history)

    def _new_engine(self, claim: Claim) -> Engine:
        fn = self.app.workflows[claim.workflow].fn  # claims cover registered workflows only
        return Engine(
            fn, workflow=claim.workflow, run_id=claim.run_id, decode=self.app._decode_value
        )

    def _submit(self, fn: Any, *args: Any) -> None:
        with self._state_lock:
            if self._shut_down:
                return  # a late timer tick after stop(): the lease will be re-claimed
            self._busy += 1

        def task() -> None:
            try:
                fn(*args)
            except Exception:  # pragma: no cover - a bug in the worker itself
                log.exception("worker %s: unexpected error", self.worker_id)
            finally:
                with self._state_lock:
                    self._busy -= 1
                self._wake.set()

        self._executor.submit(task)

    # -- driving a run -------------------------------------------------------------

    def _activate(self, act: Activation, history: list[HistoryEvent]) -> None:
        with act.lock:
            try:
                if history:
                    act.engine.feed(history, replaying=True)
                step = self._advance(act, [])
            except _Lost:
                self._drop(act, release=False)
                return
        if step is not None:
            self._execute(act, step)

    def _advance(self, act: Activation, produced: list[NewEvent]) -> PendingStep | None:
        """Bring the run forward: ``produced`` are events this worker made (a step result)
        that are not written yet. Writes them with whatever they lead to in as few
        commits as possible, then starts the next steps. Called with ``act.lock`` held;
        returns the one step the caller should execute in its own thread, if any."""
        while not act.done:
            if produced:
                self._feed_live(act, produced)
            engine = act.engine
            outcome = engine.outcome
            deadline = act.claim.deadline
            if outcome is None and deadline is not None and deadline <= _now():
                outcome = TimedOut()
            if outcome is not None:
                self._finish(act, produced, outcome)
                return None
            if act.nudged or self._needs_sync(act):
                self._write(act, produced, "hold")
                produced = []
                if self._sync(act):
                    continue
            # A paused run stops at its yield: nothing new is started (steps already running
            # finish and are recorded); signals, events and timers wait in the inbox.
            starters = [] if act.paused else self._starters(act)
            if starters:
                produced = produced + starters
                continue  # feed them (they change pending state) and look again
            pending = engine.pending()
            now = _now()
            runnable = [
                p
                for p in pending
                if isinstance(p, PendingStep)
                and p.pos not in act.in_flight
                and (p.not_before is None or p.not_before <= now)
            ]
            if self._stopping.is_set() or act.paused:
                runnable = []
            if runnable or act.in_flight:
                self._write(act, produced, "hold")
                produced = []
                self._schedule_tick(act, pending)
                if len(runnable) == 1 and not act.in_flight:
                    act.in_flight.add(runnable[0].pos)
                    return runnable[0]
                for p in runnable:
                    act.in_flight.add(p.pos)
                    self._submit(self._run_step_async, act, p)
                return None
            # Nothing to do now: give the run back until its next timer, retry or signal.
            status = "paused" if act.paused else "waiting"
            wake = None if act.paused else self._wake_at(act, pending)
            self._write(act, produced, "release", status=status, wake_at=wake)
            self._drop(act, release=False, keep_engine=True)
            return None
        return None

    def _schedule_tick(self, act: Activation, pending: list[Any]) -> None:
        """A held run with steps in flight may also wait on a timer (``ctx.any(step,
        ctx.sleep(5))``): look at it again when the earliest one is due."""
        times = [
            t
            for p in pending
            if (
                t := p.fire_at
                if isinstance(p, PendingTimer)
                else p.timeout_at
                if isinstance(p, PendingWait)
                else None
            )
            is not None
        ]
        if not times:
            return
        due = min(times)
        if act.tick_at is not None and act.tick_at <= due:
            return  # a tick is already scheduled in time
        act.tick_at = due
        delay = max((due - _now()).total_seconds(), 0.0) + 0.001
        timer = threading.Timer(delay, self._submit, (self._tick, act))
        timer.daemon = True
        timer.start()

    def _tick(self, act: Activation) -> None:
        """Look at a held run again (a timer came due, or its inbox was nudged)."""
        with act.lock:
            act.tick_at = None
            if act.done:
                return
            try:
                step = self._advance(act, [])
            except _Lost:
                self._drop(act, release=False)
                return
        if step is not None:
            self._execute(act, step)

    def _run_step_async(self, act: Activation, step: PendingStep) -> None:
        self._execute(act, step)

    def _execute(self, act: Activation, step: PendingStep | None) -> None:
        """The hot path: run a step in this thread, record its result together with what
        it leads to (one commit), and go on with the next step while there is exactly one."""
        while step is not None:
            event = self._run_step(act, step)
            with act.lock:
                if act.done:
                    return
                act.in_flight.discard(step.pos)
                try:
                    step = self._advance(act, [event])
                except _Lost:
                    self._drop(act, release=False)
                    return

    def _run_step(self, act: Activation, step: PendingStep) -> NewEvent:
        """Execute one attempt of a step and describe its outcome as an event."""
        call = step.call
        definition: StepDef | None = call.options
        name = call.name
        try:
            if definition is None:
                raise DurableError(f"step {name!r} is not registered in this worker")
            value = _call_with_timeout(definition, call.args, call.kwargs)
            encoded = self.app.codec.encode(value)
        except BaseException as exc:  # a step may raise anything; we record it
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return self._step_failure(step, definition, exc)
        return NewEvent(
            0,
            "step_completed",
            {"pos": step.pos, "name": name, "attempt": step.attempt, "result": encoded},
            _now(),
        )

    def _step_failure(
        self, step: PendingStep, definition: StepDef | None, exc: BaseException
    ) -> NewEvent:
        now = _now()
        error_type = qualified_name(type(exc))
        if isinstance(exc, SerializationError):
            error_type = "durable.SerializationError"
        message = str(exc) or type(exc).__name__
        retryable = (
            definition is not None
            and not isinstance(exc, SerializationError)
            and definition.retry.retries(exc, step.attempt)
        )
        base = {
            "pos": step.pos,
            "name": step.call.name,
            "error_type": error_type,
            "message": message,
        }
        if retryable:
            assert definition is not None
            retry_at = now + timedelta(seconds=definition.retry.delay(step.attempt))
            log.info(
                "step %s attempt %d failed (%s); retrying at %s",
                step.call.name,
                step.attempt,
                message,
                retry_at.isoformat(),
            )
            return NewEvent(
                0,
                "step_attempt_failed",
                {**base, "attempt": step.attempt, "retry_at": retry_at.isoformat()},
                now,
            )
        return NewEvent(0, "step_failed", {**base, "attempts": step.attempt}, now)

    # -- writing -------------------------------------------------------------------

    def _numbered(self, act: Activation, events: list[NewEvent]) -> list[NewEvent]:
        seq = act.last_seq
        out = []
        for e in events:
            seq += 1
            out.append(NewEvent(seq, e.type, e.data, e.created_at))
        return out

    def _feed_live(self, act: Activation, produced: list[NewEvent]) -> None:
        """Feed events this worker made to the engine before they are written (they are
        numbered now; :meth:`_write` must write exactly these, or drop the engine)."""
        pending_feed = [e for e in produced if e.seq == 0]
        if not pending_feed:
            return
        base = act.engine.last_seq
        numbered = []
        for i, e in enumerate(pending_feed):
            numbered.append(NewEvent(base + i + 1, e.type, e.data, e.created_at))
        act.engine.feed(
            [HistoryEvent(e.seq, e.type, e.data, e.created_at) for e in numbered], replaying=False
        )
        # replace the unnumbered events in place so the caller writes the numbered ones
        it = iter(numbered)
        produced[:] = [next(it) if e.seq == 0 else e for e in produced]

    def _markers(self, act: Activation) -> list[NewEvent]:
        out: list[NewEvent] = []
        now = _now()
        for type_, data in act.engine.take_markers():
            if type_ == "status_set":
                value = self.app.codec.encode(data.get("value"))
                act.custom_status = value
                act.set_custom = True
                data = {"value": value}
            out.append(NewEvent(act.engine.last_seq + len(out) + 1, type_, data, now))
        if out:
            # markers are fed too, so the engine's seq stays in step with the log
            act.engine.feed(
                [HistoryEvent(e.seq, e.type, e.data, e.created_at) for e in out], replaying=False
            )
        return out

    def _write(
        self,
        act: Activation,
        produced: list[NewEvent],
        mode: Mode,
        *,
        status: str = "running",
        wake_at: datetime | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Append ``produced`` (already fed) plus pending markers, and move the run's
        projection (``mode``). Held-lease appends go through the group commit."""
        events = self._numbered(act, list(produced) + self._markers(act))
        if not events and mode == "hold":
            return
        try:
            if mode == "hold":
                nudged = self._group.append(
                    act.run_id, act.token, act.last_seq, events, act.custom_status, act.set_custom
                )
                wake_now = False
            else:
                result = self.app.store.append(
                    run_id=act.run_id,
                    token=act.token,
                    expected_seq=act.last_seq,
                    events=events,
                    mode=mode,
                    status=status,
                    lease_seconds=self.lease_seconds,
                    wake_at=wake_at,
                    custom_status=act.custom_status,
                    set_custom=act.set_custom,
                    error=error,
                    set_error=error is not None or mode == "finish",
                )
                nudged, wake_now = result.nudged, result.wake_now
        except (ConflictError, DatabaseUnavailable, StoreError) as exc:
            log.warning("run %s: cannot record progress (%s); letting it go", act.run_id, exc)
            if isinstance(exc, DatabaseUnavailable):
                with self._state_lock:
                    self._to_release.append((act.run_id, act.token))
            raise _Lost from exc
        act.set_custom = False
        if events:
            act.last_seq = events[-1].seq
        act.nudged = act.nudged or nudged
        if mode == "release" and wake_now:
            self._wake.set()

    def _drop(self, act: Activation, *, release: bool, keep_engine: bool = False) -> None:
        act.done = True
        with self._state_lock:
            if self._held.get(act.run_id) is act:
                del self._held[act.run_id]
            if keep_engine and act.engine.outcome is None:
                self._cache[act.run_id] = (act.engine, act.history_start)
                self._cache.move_to_end(act.run_id)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            else:
                self._cache.pop(act.run_id, None)
        if release:
            with contextlib.suppress(DurableError):
                self.app.store.release(act.run_id, act.token)

    # -- background threads --------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        interval = max(self.lease_seconds / 3.0, 0.05)
        while not self._stopped.wait(interval):
            with self._state_lock:
                held = {a.token: a for a in self._held.values()}
            if not held:
                continue
            try:
                kept = self.app.store.heartbeat(list(held), self.lease_seconds)
            except DurableError as exc:
                log.warning("worker %s: heartbeat failed (%s)", self.worker_id, exc)
                continue
            for token, act in held.items():
                if token not in kept and not act.done:
                    log.warning("run %s: lease lost", act.run_id)
                    act.done = True
                    with self._state_lock:
                        self._held.pop(act.run_id, None)
                        self._cache.pop(act.run_id, None)

    def _listen_loop(self) -> None:
        store = self.app.store
        failures = 0
        while not self._stopped.is_set():
            try:
                conn = store.connect_listener()
            except DurableError:
                failures += 1
                self._stopped.wait(min(0.2 * 2**failures, 5.0))
                continue
            failures = 0
            try:
                store.listen(conn, store.channel)
                while not self._stopped.is_set():
                    for note in conn.notifies(timeout=0.5, stop_after=1):
                        with self._state_lock:
                            held = self._held.get(note.payload)
                        if held is not None:
                            held.nudged = True
                            self._submit(self._tick, held)
                        else:
                            self._wake.set()
            except psycopg.Error:
                pass
            finally:
                conn.close()
