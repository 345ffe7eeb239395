"""Group commit: step results and run endings of many runs in one statement.

Threads that write for different runs at the same moment share one statement and one
commit: the first to arrive (the leader) sends its own write at once, alone; writes that
arrive while a statement is in flight queue up and the next leader sends them together.
A lone worker thread therefore pays nothing extra, and many threads pay one round trip per
batch instead of one per step. Every run in a batch is fenced on its own lease and seq.
A batch carries held-lease appends and the ends of runs that have no parent and no live
children; any other end (or one whose fence fails) is handed back to the caller, which
records it in a full transaction.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ..replay.errors import DurableError
from ..replay.vocabulary import RunStatus
from ._db import Database, wrap
from ._leases import LeaseStore
from ._records import NewEvent

__all__ = ["MAX_BATCH", "GroupAppender", "NotFinishedHere"]

MAX_BATCH = 64


@dataclass(eq=False)
class _Request:
    run_id: str
    token: uuid.UUID
    expected_seq: int
    events: Sequence[NewEvent]
    custom_status: Any
    set_custom: bool
    done: bool = False
    nudged: bool = False
    error: BaseException | None = None
    #: set for the end of a run (no parent, no live children): its final status and error
    finish_status: RunStatus | None = None
    finish_error: dict[str, Any] | None = None


class NotFinishedHere(Exception):
    """The run's end could not be recorded by the group statement (the fence failed, or
    the run has a parent or live children): record it on the full transactional path."""


class GroupAppender:
    """Batches concurrent held-lease appends of different runs (see the module doc)."""

    def __init__(self, db: Database, leases: LeaseStore) -> None:
        self._db = db
        self._leases = leases
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._busy = False
        self.batches = 0
        self.appends = 0
        self._conn: psycopg.Connection[Any] | None = None  # used by the leader only

    def close(self) -> None:
        """Give the appender's connection back to the pool."""
        with self._cond:
            conn, self._conn = self._conn, None
        if conn is not None:
            self._db.give_back(conn)

    def append(
        self,
        run_id: str,
        token: uuid.UUID,
        expected_seq: int,
        events: Sequence[NewEvent],
        custom_status: Any,
        set_custom: bool,
        *,
        finish_status: RunStatus | None = None,
        finish_error: dict[str, Any] | None = None,
    ) -> bool:
        """Append and return the run's ``nudged`` flag; raises like :meth:`LeaseStore.append`.

        With ``finish_status`` the events end the run (see :class:`NotFinishedHere`)."""
        req = _Request(
            run_id,
            token,
            expected_seq,
            events,
            custom_status,
            set_custom,
            finish_status=finish_status,
            finish_error=finish_error,
        )
        with self._cond:
            self._queue.append(req)
            while not req.done and self._busy:
                self._cond.wait()
            if req.done:
                return self._outcome(req)
            self._busy = True
            # The leader always sends its own request, plus up to MAX_BATCH - 1 others.
            others = [r for r in self._queue if r is not req]
            batch = [req, *others[: MAX_BATCH - 1]]
            self._queue = others[MAX_BATCH - 1 :]
        try:
            self._send(batch)
        except BaseException as exc:
            for r in batch:
                if not r.done:
                    r.error, r.done = exc, True
        finally:
            with self._cond:
                self._busy = False
                self.batches += 1
                self.appends += len(batch)
                self._cond.notify_all()
        return self._outcome(req)

    @staticmethod
    def _outcome(req: _Request) -> bool:
        if req.error is not None:
            raise req.error
        return req.nudged

    def _send(self, batch: list[_Request]) -> None:
        """Send a batch on a connection the appender keeps borrowed from the pool (no
        checkout per step); one from the pool each time when the pool is too small to
        lend one for long. Either way the pool's limit counts it: a server short of
        connections makes the appender wait for one, not fail."""
        if not self._db.can_lend:
            with self._db.connection() as pooled:
                self._send_on(pooled, batch)
            return
        if self._conn is None or self._conn.closed:
            self._conn = self._db.borrow()
        conn = self._conn
        try:
            self._send_on(conn, batch)
        except psycopg.Error as exc:
            if conn.broken or isinstance(exc, psycopg.OperationalError):
                self._conn = None
                self._db.give_back(conn)
            raise wrap(exc) from exc

    def _send_on(self, conn: psycopg.Connection[Any], batch: list[_Request]) -> None:
        leases = self._leases
        if len(batch) == 1 and batch[0].finish_status is not None:
            r = batch[0]
            status = batch[0].finish_status
            ended = leases.finish_simple(
                conn,
                run_id=r.run_id,
                token=r.token,
                expected_seq=r.expected_seq,
                events=r.events,
                status=status,
                custom_status=r.custom_status,
                set_custom=r.set_custom,
                error=r.finish_error,
            )
            if not ended:
                r.error = NotFinishedHere(r.run_id)
            r.done = True
            return
        if len(batch) == 1:
            r = batch[0]
            result = leases.append(
                run_id=r.run_id,
                token=r.token,
                expected_seq=r.expected_seq,
                events=r.events,
                mode="hold",
                status=RunStatus.RUNNING,
                lease_seconds=0.0,
                custom_status=r.custom_status,
                set_custom=r.set_custom,
                conn=conn,
            )
            r.nudged, r.done = result.nudged, True
            return
        params: dict[str, Any] = {
            k: []
            for k in (
                "run_ids",
                "tokens",
                "expected",
                "new_seqs",
                "set_custom",
                "customs",
                "statuses",
                "errors",
                "ev_run",
                "ev_seq",
                "ev_type",
                "ev_data",
                "ev_at",
            )
        }
        for r in batch:
            params["run_ids"].append(r.run_id)
            params["tokens"].append(r.token)
            params["expected"].append(r.expected_seq)
            params["new_seqs"].append(r.events[-1].seq if r.events else r.expected_seq)
            params["set_custom"].append(r.set_custom)
            params["customs"].append(Jsonb(r.custom_status) if r.set_custom else None)
            params["statuses"].append(r.finish_status)
            params["errors"].append(None if r.finish_error is None else Jsonb(r.finish_error))
            for e in r.events:
                params["ev_run"].append(r.run_id)
                params["ev_seq"].append(e.seq)
                params["ev_type"].append(e.type)
                params["ev_data"].append(Jsonb(e.data))
                params["ev_at"].append(e.created_at)
        params["done_channel"] = self._db.done_channel
        rows = conn.execute(self._db.q["group_commit"], params).fetchall()
        matched = {row[0]: bool(row[1]) for row in rows}
        for r in batch:
            if r.run_id in matched:
                r.nudged, r.done = matched[r.run_id], True
        missing = [r for r in batch if not r.done]
        for r in missing:
            if r.finish_status is not None:
                r.error, r.done = NotFinishedHere(r.run_id), True
                continue
            try:
                leases.raise_fence(conn, r.run_id, r.token, r.expected_seq)
            except DurableError as exc:
                r.error = exc
            else:  # pragma: no cover - the fence check always raises
                r.error = DurableError(f"append to run {r.run_id!r} was not recorded")
            r.done = True
