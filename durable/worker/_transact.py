"""Transactional steps (``@app.transaction()``): the step's code and the append of its
result share one transaction, so the step's database writes happen exactly once.

The attempt, in the pool thread that drives the step:

1. open a transaction on a connection with the user's own settings (a pool of its own,
   see ``Database.step_transaction``) and call the step with it;
2. under the run's lock, feed the result to the engine, number it after the run's last
   seq and append it on that same connection, fenced by the lease like every append;
3. commit. The step's writes and its result are in the log together, or neither is.

If the code raises, the transaction rolls back and the attempt is an ordinary failure,
retried by the step's policy (recorded through the usual path). If the lease is lost or
the database fails before the commit, both roll back and the run is let go: it is
replayed later, here or elsewhere, and the step runs again. A crash of the worker before
the commit is the same rollback, done by PostgreSQL.

An ``async def`` transactional step runs on the worker's event loop with an
``AsyncConnection``; the pool thread still does step 2 (the run's lock is a thread lock),
handing the append to the loop and waiting for it, so the loop never blocks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from datetime import datetime
from typing import Any, NoReturn

from .._clock import utcnow
from .._registry import StepDef
from ..replay import PendingStep
from ..store import AsyncDatabase, Database, LeaseStore, NewEvent, Plan
from ._recorder import Recorder
from ._state import Activation, Lost, WorkerState
from ._steps import StepRunner

__all__ = ["TransactionalSteps"]

log = logging.getLogger("durable.worker")


class TransactionalSteps:
    """Runs the attempts of transactional steps (see the module doc)."""

    def __init__(
        self,
        db: Database,
        leases: LeaseStore,
        recorder: Recorder,
        steps: StepRunner,
        state: WorkerState,
        loop: asyncio.AbstractEventLoop,
        *,
        lease_seconds: float,
        concurrency: int,
    ) -> None:
        self._db = db
        self._leases = leases
        self._recorder = recorder
        self._steps = steps
        self._state = state
        self._loop = loop
        self._lease_seconds = lease_seconds
        self._size = max(concurrency, 1)  # every pool thread may run a transactional step
        self._adb = AsyncDatabase(db, max_size=self._size, own_settings=False)

    def run(self, act: Activation, step: PendingStep, definition: StepDef) -> NewEvent | None:
        """One attempt: None when its result is committed (fed and written), else the
        failure event to record the usual way. Raises :class:`Lost` when the run must be
        let go (lease lost, or the database failed around the step's code)."""
        started = utcnow()
        if definition.is_async:
            return self._run_async(act, step, definition, started)
        call = step.call
        stage = "begin"  # begin -> code -> commit: where an exception came from
        try:
            with self._db.step_transaction(self._lease_seconds, self._size) as conn:
                stage = "code"
                value = definition.fn(conn, *call.args, **call.kwargs)
                _check_not_aborted(self._db, conn, definition)
                event = self._steps.completed(step, value, started)
                stage = "append"
                with act.lock:
                    plan = self._prepare(act, event)
                    try:
                        result = self._db.drive(conn, plan)
                    except Exception as exc:  # fenced out, or the database failed
                        self._lost(act, definition, exc)
                    act.nudged = act.nudged or result.nudged
                stage = "commit"
        except Lost:
            raise
        except BaseException as exc:  # a step may raise anything; we record it
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            if stage != "code":  # no transaction, or a failed commit: not the step's doing
                self._lost(act, definition, exc)
            return self._steps.failure(step, definition, exc, started)
        self._state.write_succeeded(act.run_id)
        return None

    # -- async ---------------------------------------------------------------------------

    def _run_async(
        self, act: Activation, step: PendingStep, definition: StepDef, started: datetime
    ) -> NewEvent | None:
        ready: concurrent.futures.Future[tuple[NewEvent, asyncio.Future[Plan[Any]]]] = (
            concurrent.futures.Future()
        )
        appended: concurrent.futures.Future[Any] = concurrent.futures.Future()
        attempt = asyncio.run_coroutine_threadsafe(
            self._attempt(step, definition, ready, appended, started), self._loop
        )
        either: list[concurrent.futures.Future[Any]] = [ready, attempt]
        concurrent.futures.wait(either, return_when=concurrent.futures.FIRST_COMPLETED)
        if not ready.done():  # the code raised (or its result cannot be stored)
            try:
                attempt.result()
            except _NoTransaction as exc:
                self._lost(act, definition, exc.__cause__ or exc)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                return self._steps.failure(step, definition, exc, started)
            raise AssertionError("a transactional attempt ended without its result")
        event, plan_box = ready.result()
        with act.lock:
            try:
                plan = self._prepare(act, event)
            except BaseException as exc:
                self._loop.call_soon_threadsafe(plan_box.set_exception, Lost())
                attempt.exception()  # wait for the rollback
                raise exc
            self._loop.call_soon_threadsafe(plan_box.set_result, plan)
            try:
                result = appended.result()
            except Exception as exc:  # fenced out, or the database failed
                attempt.exception()
                self._lost(act, definition, exc)
            act.nudged = act.nudged or result.nudged
        try:
            attempt.result()  # the commit
        except BaseException as exc:
            self._lost(act, definition, exc)
        self._state.write_succeeded(act.run_id)
        return None

    async def _attempt(
        self,
        step: PendingStep,
        definition: StepDef,
        ready: concurrent.futures.Future[tuple[NewEvent, asyncio.Future[Plan[Any]]]],
        appended: concurrent.futures.Future[Any],
        started: datetime,
    ) -> None:
        """On the loop: the transaction, the step's code, then the append the pool thread
        prepares (``plan_box``), then the commit."""
        call = step.call
        try:
            transaction = self._adb.step_transaction(self._lease_seconds)
            conn = await transaction.__aenter__()
        except Exception as exc:  # no transaction: not the step's doing
            raise _NoTransaction(exc) from exc
        try:
            value = await definition.fn(conn, *call.args, **call.kwargs)
            _check_not_aborted(self._db, conn, definition)
            event = self._steps.completed(step, value, started)
            plan_box: asyncio.Future[Plan[Any]] = self._loop.create_future()
            ready.set_result((event, plan_box))
            plan = await plan_box  # Lost when the run was let go meanwhile: roll back
            try:
                result = await self._adb.drive(conn, plan)
            except BaseException as exc:
                appended.set_exception(exc)
                raise
            appended.set_result(result)
        except BaseException as exc:
            await transaction.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        await transaction.__aexit__(None, None, None)

    def close(self) -> None:
        """Close the async pool (from the pool thread, before the loop stops)."""
        if self._loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._adb.close(), self._loop)
            try:
                future.result(10)
            except Exception as exc:  # pragma: no cover - the loop is going away
                log.debug("closing the transactional steps' async pool: %s", exc)

    # -- shared ----------------------------------------------------------------------------

    def _prepare(self, act: Activation, event: NewEvent) -> Plan[Any]:
        """Under the run's lock: feed ``event``, number it with the engine's markers, and
        the fenced append that writes them (``act`` moves on as if it were written: if
        the commit fails the run is let go, its engine dropped)."""
        if act.done:
            raise Lost()
        produced = [event]
        self._recorder.feed_live(act, produced)
        events = self._recorder.numbered(act, produced + self._recorder.markers(act, utcnow()))
        plan = self._leases.append_in_step(
            run_id=act.run_id,
            token=act.token,
            expected_seq=act.last_seq,
            events=events,
            lease_seconds=self._lease_seconds,
            custom_status=act.custom_status,
            set_custom=act.set_custom,
        )
        act.last_seq = events[-1].seq
        act.set_custom = False
        return plan

    def _lost(self, act: Activation, definition: StepDef, exc: BaseException) -> NoReturn:
        """The step's transaction rolled back after its result was fed: let the run go
        (it is replayed later and the step runs again), for longer each time."""
        backoff = self._state.write_failed(act.run_id)
        log.warning(
            "run %s: the transaction of step %s did not commit (%s); letting the run go "
            "for %.1fs, the step will run again",
            act.run_id,
            definition.name,
            exc,
            backoff,
        )
        self._state.release_later(act.run_id, act.token, backoff)
        raise Lost() from exc


class _NoTransaction(Exception):
    """The step's transaction could not be opened (pool exhausted, database away)."""


class StepTransactionAborted(Exception):
    """A transactional step returned, but its transaction had failed inside it."""


def _check_not_aborted(db: Database, conn: Any, definition: StepDef) -> None:
    """A step that caught a database error and returned has an aborted transaction: its
    result cannot be recorded there. That is the step's failure, retried by its policy."""
    if db.transaction_failed(conn):
        raise StepTransactionAborted(
            f"transactional step {definition.name!r} returned, but a statement in its "
            "transaction had failed (an error it caught?): the transaction is aborted and "
            "its writes are rolled back; use a savepoint (with conn.transaction():) around "
            "statements whose errors it handles"
        )
