"""``TestEnv``: an App on a fresh schema with a worker and a virtual clock."""

from __future__ import annotations

import dataclasses
import inspect
import os
import secrets
import threading
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .._app import App
from .._clock import set_skew, skew, utcnow
from .._embedded import embedded_start
from ..client import AsyncClient, Client
from ..store import VirtualClock, drop_schema, install_virtual_clock

__all__ = ["StepMock", "TestEnv"]

_ACTIVE: list[TestEnv] = []
_ACTIVE_LOCK = threading.Lock()
_MISSING: Any = object()


@dataclasses.dataclass
class StepMock:
    """What :meth:`TestEnv.mock_step` returns: the calls the mock answered so far."""

    name: str
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = dataclasses.field(default_factory=list)

    @property
    def call_count(self) -> int:
        """How many attempts the mock answered."""
        return len(self.calls)


class TestEnv:
    """Run ``app`` on a fresh schema of a test database with a worker and a virtual clock
    (a context manager; the pytest plugin's ``durable_env`` fixture is one).

    The database is ``$DURABLE_TEST_DSN``, else the embedded server (``$DURABLE_HOME``);
    never ``$DURABLE_DSN``. The schema is made for the env and dropped at its end, and
    ``app`` is put back on its own database then. ``skip`` moves the clock: due timers,
    retries and timeouts fire at once. With ``auto_skip`` (default), ``handle.result()``
    skips ahead whenever every unfinished run waits only on time. ``worker`` options go
    to the env's worker (``concurrency``, ``lease_seconds``, ...).

    One env at a time per process: the clock is the process's.
    """

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(
        self, app: App, *, auto_skip: bool = True, dsn: str | None = None, **worker: Any
    ) -> None:
        if not isinstance(app, App):
            raise TypeError(f"TestEnv needs a durable.App, not {app!r}")
        self.app = app
        self.auto_skip = auto_skip
        self._dsn = dsn
        self._worker_options = {"concurrency": 8, "poll_interval": 0.5, **worker}
        self.schema = f"durable_test_{secrets.token_hex(4)}"
        self._saved: tuple[Any, ...] | None = None
        self._worker: Any = None
        self._clock: VirtualClock | None = None
        self._mocks: dict[str, StepMock] = {}
        self._skip_lock = threading.RLock()

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> TestEnv:
        with _ACTIVE_LOCK:
            if _ACTIVE:
                raise RuntimeError(
                    "a durable.testing.TestEnv is already running in this process; use one "
                    "at a time (the virtual clock is the process's)"
                )
            _ACTIVE.append(self)
        try:
            self._open()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    async def __aenter__(self) -> TestEnv:
        """``async with TestEnv(app)``: for tests that run on an event loop (the env's
        async client is closed on that loop at the end)."""
        import asyncio

        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        if self._saved is not None:
            await self.app.aio.aclose()
        await asyncio.to_thread(self._close)

    def _open(self) -> None:
        app = self.app
        dsn = self._dsn or os.environ.get("DURABLE_TEST_DSN") or embedded_start()
        self._dsn = dsn
        set_skew(timedelta(0))
        install_virtual_clock(dsn, self.schema)
        self._saved = (app._dsn, app.schema, app._store, app.client, app.aio)
        app._dsn, app.schema, app._store = dsn, self.schema, None
        app.client = Client(lambda: app.store, app.registry)
        app.aio = AsyncClient(lambda: app.store, app.registry, pool_size=app._pool_size)
        self._clock = VirtualClock(app.store.db)  # opens the store: migrates the schema
        if self.auto_skip:
            app.client.idle_hook = app.aio.idle_hook = self._auto_skip
        self._worker = app.worker(**self._worker_options).start()

    def _close(self) -> None:
        app = self.app
        try:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None
            if self._saved is not None:
                app.aio.abandon()  # the env's async pool (its loop may be gone)
                app.close()
                app._dsn, app.schema, app._store, app.client, app.aio = self._saved
                self._saved = None
            for name in self._mocks:
                app.registry.mocked.pop(name, None)
            self._mocks.clear()
            if self._dsn is not None and not drop_schema(self._dsn, self.schema):
                warnings.warn(
                    f"TestEnv: schema {self.schema} left in place: a transaction still holds "
                    "locks in it (a connection of the test's left open?)",
                    stacklevel=2,
                )
        finally:
            set_skew(timedelta(0))
            with _ACTIVE_LOCK:
                if self in _ACTIVE:
                    _ACTIVE.remove(self)

    # -- the clock ---------------------------------------------------------------------------

    def now(self) -> datetime:
        """The virtual time (aware, UTC): real time plus every skip so far."""
        return utcnow()

    def skip(self, delta: timedelta | float) -> None:
        """Move the clock ``delta`` (a timedelta or seconds) ahead: timers, retries, wait
        timeouts and run timeouts due by then fire at once. A schedule's ticks on the
        way each start their run (the clock stops at each tick until it fired). Steps
        running meanwhile are not disturbed (their leases move with the clock)."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if seconds < 0:
            raise ValueError(f"the clock only moves forward; skip({delta!r}) is negative")
        clock = self._require_clock()
        with self._skip_lock:
            remaining = seconds
            while True:
                tick = clock.look().tick
                if tick is None or tick >= remaining:
                    break
                step = max(tick, 0.0) + 0.001
                self._move(clock, step)
                remaining -= step
                self._settle(clock)
            self._move(clock, max(remaining, 0.0))

    @staticmethod
    def _move(clock: VirtualClock, seconds: float) -> None:
        if seconds <= 0:
            return
        # Python's side first: a worker that sees the database's new time finds its
        # timers due by its own clock too
        before = skew()
        set_skew(before + timedelta(seconds=seconds))
        try:
            clock.skip(seconds)
        except BaseException:
            set_skew(before)  # the two sides of the clock never drift apart
            raise

    @staticmethod
    def _settle(clock: VirtualClock, timeout: float = 10.0) -> None:
        """Until what the clock made due has happened: the tick fired (the schedule's
        next tick is ahead) and no run is held, has news or is due. As in real time,
        where a tick's run has minutes to finish before the next tick."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = clock.look()
            if (state.tick is None or state.tick > 0) and not state.working:
                return
            time.sleep(0.01)

    def _auto_skip(self) -> None:
        """``result()`` saw nothing happen: if every unfinished run waits only on time,
        skip to the earliest wake time (looked at again under the skip lock, so two
        waits that see the same quiet moment skip once)."""
        clock = self._clock
        if clock is None:
            return
        if clock.idle_wait() is None:
            return
        with self._skip_lock:  # reentrant: skip() takes it again
            wait = clock.idle_wait()
            if wait is None or wait <= 0:
                return
            self.skip(wait + 0.001)

    def _require_clock(self) -> VirtualClock:
        if self._clock is None:
            raise RuntimeError("the TestEnv is not running; use it in a `with` block")
        return self._clock

    # -- steps -------------------------------------------------------------------------------

    def mock_step(
        self,
        step: str | Callable[..., Any],
        *,
        returns: Any = _MISSING,
        raises: BaseException | type[BaseException] | None = None,
        side_effect: Callable[..., Any] | None = None,
    ) -> StepMock:
        """Replace a step (its name or the decorated function) for the env's lifetime:
        each attempt returns ``returns``, raises ``raises``, or calls ``side_effect`` with
        the step's arguments (an ``async def`` is awaited). Retries and timeouts apply as
        for the real step. Returns a :class:`StepMock` recording the calls."""
        name = step if isinstance(step, str) else getattr(step, "durable_name", None)
        registry = self.app.registry
        if name is None or name not in registry.steps:
            known = ", ".join(sorted(registry.steps)) or "none"
            raise ValueError(f"mock_step: {step!r} is not a step of this App (its steps: {known})")
        given = [returns is not _MISSING, raises is not None, side_effect is not None]
        if sum(given) != 1:
            raise ValueError("mock_step takes exactly one of returns=, raises= or side_effect=")
        mock = StepMock(name)
        is_async = side_effect is not None and inspect.iscoroutinefunction(side_effect)

        if is_async:
            assert side_effect is not None
            effect = side_effect

            async def fake_async(*args: Any, **kwargs: Any) -> Any:
                mock.calls.append((args, kwargs))
                return await effect(*args, **kwargs)

            fn: Callable[..., Any] = fake_async
        else:

            def fake(*args: Any, **kwargs: Any) -> Any:
                mock.calls.append((args, kwargs))
                if side_effect is not None:
                    return side_effect(*args, **kwargs)
                if raises is not None:
                    raise raises
                return returns

            fn = fake
        registry.mocked[name] = dataclasses.replace(
            registry.steps[name], fn=fn, is_async=is_async, transactional=False
        )
        self._mocks[name] = mock
        return mock
