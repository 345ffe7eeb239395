"""The worker's units of work: claims, loading logs, fenced appends, heartbeats, inbox
syncs, a run's end with its family effects, and continue-as-new.

Every append is fenced on ``(lease_token, last_seq)``: it succeeds only if the writer still
holds the lease and the log has not moved on; otherwise nothing is written and
:class:`LeaseLost` or :class:`ConflictError` says which.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, NoReturn

from psycopg.types.json import Jsonb

from ..replay.vocabulary import EventType, RunStatus
from ._db import Conn, Database
from ._errors import ConflictError, LeaseLost, RunNotFound
from ._family import Family
from ._plan import Plan, Query, drive
from ._records import (
    AppendResult,
    Claim,
    DueTimer,
    InboxWait,
    NewEvent,
    RunEnd,
    StoredEvent,
    SyncResult,
    WorkerBeat,
    events_json,
    jsonb_text,
)
from ._sql import SET_SEARCH_PATH, search_path_of

__all__ = ["LeaseStore", "Mode"]

Mode = Literal["hold", "release", "finish"]

_CONTROL_EVENTS = {
    "pause": EventType.RUN_PAUSED,
    "resume": EventType.RUN_RESUMED,
    "cancel": EventType.CANCEL_REQUESTED,
}


class LeaseStore:
    """What a worker does to the runs it holds (see the module doc)."""

    def __init__(self, db: Database, family: Family) -> None:
        self._db = db
        self._q = db.q
        self._family = family

    # -- claiming --------------------------------------------------------------------------

    def claim(
        self, owner: str, limit: int, lease_seconds: float, workflows: Sequence[str]
    ) -> list[Claim]:
        """Lease up to ``limit`` runnable runs of the given workflows (FOR UPDATE SKIP
        LOCKED); runs of workflows this worker does not know are left to others. For runs
        never started the same statement returns their log."""
        with self._db.connection() as conn:
            rows = conn.execute(
                self._q["claim"],
                {
                    "owner": owner,
                    "limit": limit,
                    "lease": lease_seconds,
                    "workflows": list(workflows),
                },
            ).fetchall()
        return _claims(rows)

    def claim_queued(
        self,
        owner: str,
        limit: int,
        lease_seconds: float,
        workflows: Sequence[str],
        held: Mapping[str, int],
    ) -> list[Claim]:
        """Lease up to ``limit`` runs of queues, in one statement (the ``claim_queued``
        function, docs/internals.md 4.1): it locks the row of every queue with runs of
        these workflows to start or resume and admits within their limits; ``held`` is
        how many runs of each queue this worker holds now (for ``worker_concurrency``)."""
        with self._db.connection() as conn:
            rows = conn.execute(
                self._q["claim_queued"],
                {
                    "owner": owner,
                    "limit": limit,
                    "lease": lease_seconds,
                    "workflows": list(workflows),
                    "held_queues": list(held),
                    "held_counts": list(held.values()),
                },
            ).fetchall()
        return _claims(rows)

    def set_timeout(
        self,
        run_id: str,
        token: uuid.UUID,
        timeout_seconds: float | None,
        deadline: datetime | None,
    ) -> None:
        """Record the workflow timeout of a run created by a process that did not know it
        (a child of a workflow its parent's worker does not register)."""
        with self._db.connection() as conn:
            conn.execute(
                self._q["set_timeout"],
                {
                    "run_id": run_id,
                    "token": token,
                    "timeout": timeout_seconds,
                    "deadline": deadline,
                },
            )

    def worker_beat(self, beat: WorkerBeat) -> None:
        """Heartbeat the worker's row in the registry (insert it on the first beat)."""
        with self._db.connection() as conn:
            conn.execute(
                self._q["worker_beat"],
                {
                    "worker_id": beat.worker_id,
                    "host": beat.host,
                    "pid": beat.pid,
                    "lease": beat.lease_seconds,
                    "concurrency": beat.concurrency,
                    "workflows": list(beat.workflows),
                    "queues": list(beat.queues),
                    "runs_held": beat.runs_held,
                },
            )

    def worker_gone(self, worker_id: str) -> None:
        """Remove a stopping worker from the registry."""
        with self._db.connection() as conn:
            conn.execute(self._q["worker_gone"], {"worker_id": worker_id})

    def load_events(self, after: dict[str, int]) -> dict[str, list[StoredEvent]]:
        """Events of several runs with ``seq > after[run_id]``, in order, in one query."""
        out: dict[str, list[StoredEvent]] = {run_id: [] for run_id in after}
        if not after:
            return out
        ids = list(after)
        with self._db.connection() as conn:
            rows = conn.execute(
                self._q["load_events"], {"run_ids": ids, "after": [after[i] for i in ids]}
            ).fetchall()
        for run_id, seq, type_, data, created_at in rows:
            out[run_id].append(StoredEvent(run_id, seq, type_, data, created_at))
        return out

    def heartbeat(
        self, held: Sequence[tuple[str, uuid.UUID]], lease_seconds: float
    ) -> set[uuid.UUID]:
        """Extend the given leases, ``(run_id, token)`` pairs; returns the tokens still
        held. Never waits on a row another transaction locked (see the query)."""
        if not held:
            return set()
        with self._db.connection() as conn:
            rows = conn.execute(
                self._q["heartbeat"],
                {
                    "run_ids": [run_id for run_id, _ in held],
                    "tokens": [token for _, token in held],
                    "lease": lease_seconds,
                },
            ).fetchall()
        return {r[0] for r in rows}

    def release(self, run_id: str, token: uuid.UUID, *, delay: float = 0.0) -> None:
        """Give a lease back; any worker may claim the run again after ``delay`` seconds."""
        with self._db.connection() as conn:
            conn.execute(self._q["release"], {"run_id": run_id, "token": token, "delay": delay})

    # -- appending -------------------------------------------------------------------------

    def append(
        self,
        *,
        run_id: str,
        token: uuid.UUID,
        expected_seq: int,
        events: Sequence[NewEvent],
        mode: Mode,
        status: RunStatus,
        lease_seconds: float,
        wake_at: datetime | None = None,
        custom_status: Any = None,
        set_custom: bool = False,
        error: dict[str, Any] | None = None,
        set_error: bool = False,
        conn: Conn | None = None,
    ) -> AppendResult:
        """Append ``events`` after ``expected_seq`` if this lease still holds the run, and
        move the projection (``mode``: ``hold`` keeps the lease, ``release`` gives it up
        with ``status`` waiting, paused or blocked, ``finish`` ends the run), in one
        statement. Raises :class:`LeaseLost` or :class:`ConflictError`."""
        if mode == "hold" and len(events) == 1 and not set_custom and not set_error:
            return self._append_one(run_id, token, expected_seq, events[0], conn)
        params = _append_params(
            run_id,
            token,
            expected_seq,
            events,
            mode=mode,
            status=status,
            lease_seconds=lease_seconds,
            wake_at=wake_at,
            custom_status=custom_status,
            set_custom=set_custom,
            error=error,
            set_error=set_error,
        )
        if conn is None:
            with self._db.connection() as c:
                return self._append_on(c, params)
        return self._append_on(conn, params)

    def _append_on(self, conn: Conn, params: dict[str, Any]) -> AppendResult:
        row = conn.execute(self._q["append"], params).fetchone()
        if row is None:
            self.raise_fence(conn, params["run_id"], params["token"], params["expected_seq"])
        assert row is not None
        return AppendResult(bool(row[0]), bool(row[1]), bool(row[2]))

    def _append_one(
        self,
        run_id: str,
        token: uuid.UUID,
        expected_seq: int,
        event: NewEvent,
        conn: Conn | None,
    ) -> AppendResult:
        params = (
            event.seq,
            run_id,
            token,
            expected_seq,
            event.seq,
            str(event.type),  # a plain str: psycopg finds its dumper at once
            Jsonb(event.data),
            event.created_at,
        )
        if conn is None:
            with self._db.connection() as c:
                row = c.execute(self._q["append_one"], params).fetchone()
                if row is None:
                    self.raise_fence(c, run_id, token, expected_seq)
        else:
            row = conn.execute(self._q["append_one"], params).fetchone()
            if row is None:
                self.raise_fence(conn, run_id, token, expected_seq)
        assert row is not None
        return AppendResult(bool(row[0]), False, False)

    def append_in_step(
        self,
        *,
        run_id: str,
        token: uuid.UUID,
        expected_seq: int,
        events: Sequence[NewEvent],
        lease_seconds: float,
        custom_status: Any = None,
        set_custom: bool = False,
    ) -> Plan[AppendResult]:
        """The fenced append (lease kept) of a transactional step's result, as a plan for
        the step's own connection and transaction (sync or async): it first puts the
        schema on the search_path for the rest of that transaction (the step's code has
        run by then). Raises LeaseLost or ConflictError; the caller rolls back."""
        # local to the step's transaction (its own code has run; the commit ends it)
        yield Query(SET_SEARCH_PATH, (search_path_of(self._db.schema), True))
        params = _append_params(
            run_id,
            token,
            expected_seq,
            events,
            mode="hold",
            status=RunStatus.RUNNING,
            lease_seconds=lease_seconds,
            custom_status=custom_status,
            set_custom=set_custom,
        )
        row = yield Query(self._q["append"], params)
        if row is None:
            fence = yield Query(self._q["fence_check"], {"run_id": run_id})
            _raise_fence(fence, run_id, token, expected_seq)
        return AppendResult(bool(row[0]), bool(row[1]), bool(row[2]))

    def finish_simple(
        self,
        conn: Conn,
        *,
        run_id: str,
        token: uuid.UUID,
        expected_seq: int,
        events: Sequence[NewEvent],
        status: RunStatus,
        custom_status: Any,
        set_custom: bool,
        error: dict[str, Any] | None,
    ) -> bool:
        """End a run that has no parent and no unfinished children in one statement.
        Returns False (nothing written) when that does not apply or the fence fails; the
        caller then ends the run with :meth:`end_run`, which raises the precise error."""
        params = {
            "run_id": run_id,
            "token": token,
            "expected_seq": expected_seq,
            "new_seq": events[-1].seq,
            "events": events_json(events),
            "status": status,
            "custom_status": jsonb_text(custom_status),
            "set_custom": set_custom,
            "error": jsonb_text(error),
            "done_channel": self._db.done_channel,
        }
        return conn.execute(self._q["finish_simple"], params).fetchone() is not None

    def raise_fence(self, conn: Conn, run_id: str, token: uuid.UUID, expected_seq: int) -> None:
        """Raise the error that explains why a fenced append matched no row."""
        row = conn.execute(self._q["fence_check"], {"run_id": run_id}).fetchone()
        _raise_fence(row, run_id, token, expected_seq)

    # -- the inbox -------------------------------------------------------------------------

    def sync_inbox(
        self,
        run_id: str,
        token: uuid.UUID,
        expected_seq: int,
        *,
        waits: Sequence[InboxWait],
        due: Sequence[DueTimer],
        paused: bool,
        now: datetime,
    ) -> SyncResult:
        """Move what the run's inbox holds into its log, in one transaction: every control
        message (pause, resume, cancel, a child's end), else one item for the current
        yield: a signal or latched event for one of ``waits`` (in position order), else the
        earliest of the ``due`` timers. A paused run takes control messages only. The row
        lock orders this with senders, so a signal that arrives meanwhile nudges again."""
        signal_names = [w.name for w in waits if w.kind == "signal"]

        def body(conn: Conn) -> SyncResult:
            held = conn.execute(
                self._q["lock_leased_run"], {"run_id": run_id, "token": token}
            ).fetchone()
            if held is None:
                raise LeaseLost(f"lease on run {run_id!r} was lost; another worker owns it now")
            events = self._controls(conn, run_id, now)
            checked: list[int] = []
            if not events and not paused:
                item, checked = self._one_item(conn, run_id, waits, due, now)
                if item is not None:
                    events.append(item)
            row = conn.execute(
                self._q["inbox_has_more"], {"run_id": run_id, "names": signal_names}
            ).fetchone()
            more = bool(row and row[0])
            numbered = [
                NewEvent(expected_seq + i, e.type, e.data, e.created_at)
                for i, e in enumerate(events, start=1)
            ]
            if numbered:
                self.append(
                    run_id=run_id,
                    token=token,
                    expected_seq=expected_seq,
                    events=numbered,
                    mode="hold",
                    status=RunStatus.RUNNING,
                    lease_seconds=0.0,
                    conn=conn,
                )
            if not more:
                conn.execute(self._q["clear_nudge"], {"run_id": run_id})
            return SyncResult(numbered, more, checked)

        return self._db.run(body)

    def _controls(self, conn: Conn, run_id: str, now: datetime) -> list[NewEvent]:
        rows = conn.execute(self._q["drain_controls"], {"run_id": run_id}).fetchall()
        rows.sort(key=lambda r: r[0])
        events = []
        for _id, kind, data, _at in rows:
            data = data or {}
            if kind == "child_done":
                events.append(NewEvent(0, data["type"], data["data"], now))
            elif kind == "cancel":
                events.append(
                    NewEvent(0, EventType.CANCEL_REQUESTED, {"reason": data.get("reason")}, now)
                )
            else:
                events.append(NewEvent(0, _CONTROL_EVENTS[kind], {}, now))
        return events

    def _one_item(
        self,
        conn: Conn,
        run_id: str,
        waits: Sequence[InboxWait],
        due: Sequence[DueTimer],
        now: datetime,
    ) -> tuple[NewEvent | None, list[int]]:
        checked: list[int] = []
        for w in sorted(waits, key=lambda w: w.pos):
            checked.append(w.pos)
            if w.kind == "signal":
                got = conn.execute(
                    self._q["pop_signals"], {"run_id": run_id, "name": w.name, "limit": 1}
                ).fetchone()
                if got is not None:
                    data = {"pos": w.pos, "name": w.name, "payload": got[2]}
                    return NewEvent(0, EventType.SIGNAL_RECEIVED, data, now), checked
            elif w.check_latched:
                conn.execute(self._q["key_lock"], {"key": w.name})
                row = conn.execute(self._q["latched_get"], {"keys": [w.name]}).fetchone()
                if row is not None:
                    data = {"pos": w.pos, "key": w.name, "payload": row[1]}
                    return NewEvent(0, EventType.EVENT_RECEIVED, data, now), checked
                conn.execute(self._q["waiter_add"], {"key": w.name, "run_id": run_id})
        if due:
            first = min(due, key=lambda d: (d.at, d.pos))
            return NewEvent(0, first.type, {"pos": first.pos}, now), checked
        return None, checked

    # -- ends --------------------------------------------------------------------------------

    def end_run(self, end: RunEnd, now: datetime) -> None:
        """Record a run's end with its family effects (children cancelled, the parent told,
        event waiters cleared, result() notified) in one transaction."""

        def body(conn: Conn) -> None:
            result = self.append(
                run_id=end.run_id,
                token=end.token,
                expected_seq=end.expected_seq,
                events=end.events,
                mode="finish",
                status=end.status,
                lease_seconds=0.0,
                custom_status=end.custom_status,
                set_custom=end.set_custom,
                error=end.error,
                set_error=True,
                conn=conn,
            )
            drive(
                conn,
                self._family.after_end(
                    end.run_id,
                    end.parent_run_id,
                    end.parent_pos,
                    end.status,
                    end.events[-1].data,
                    result.watched,
                    now,
                ),
            )

        self._db.run(body)

    def continue_as_new(
        self,
        run_id: str,
        token: uuid.UUID,
        expected_seq: int,
        events: Sequence[NewEvent],
        *,
        custom_status: Any,
        set_custom: bool,
    ) -> None:
        """Append ``events`` (ending with the new ``run_started``) and make that event the
        start of the run's history; the events before it are deleted."""
        start = events[-1]

        def body(conn: Conn) -> None:
            self.append(
                run_id=run_id,
                token=token,
                expected_seq=expected_seq,
                events=events,
                mode="hold",
                status=RunStatus.RUNNING,
                lease_seconds=0.0,
                custom_status=custom_status,
                set_custom=set_custom,
                conn=conn,
            )
            conn.execute(
                self._q["restart_history"],
                {"run_id": run_id, "history_start": start.seq, "token": token},
            )
            conn.execute(self._q["delete_history"], {"run_id": run_id, "before": start.seq})

        self._db.run(body)


def _claims(rows: Sequence[Any]) -> list[Claim]:
    """Claims from the rows of a claim query (one row per run and event)."""
    claims: dict[str, Claim] = {}
    for r in rows:
        claim = claims.get(r[0])
        if claim is None:
            claim = claims[r[0]] = Claim(
                run_id=r[0],
                workflow=r[1],
                token=r[2],
                last_seq=r[3],
                history_start=r[4],
                deadline=r[5],
                nudged=r[6],
                parent_run_id=r[7],
                parent_pos=r[8],
                timeout_unknown=r[10],
                created_at=r[11],
                events=[] if r[9] else None,
                queue=r[16] if len(r) > 16 else None,
            )
        if r[12] is not None and claim.events is not None:
            claim.events.append(StoredEvent(r[0], r[12], r[13], r[14], r[15]))
    return list(claims.values())


def _append_params(
    run_id: str,
    token: uuid.UUID,
    expected_seq: int,
    events: Sequence[NewEvent],
    *,
    mode: Mode,
    status: RunStatus,
    lease_seconds: float,
    wake_at: datetime | None = None,
    custom_status: Any = None,
    set_custom: bool = False,
    error: dict[str, Any] | None = None,
    set_error: bool = False,
) -> dict[str, Any]:
    """The parameters of the ``append`` query."""
    return {
        "run_id": run_id,
        "token": token,
        "expected_seq": expected_seq,
        "new_seq": events[-1].seq if events else expected_seq,
        "events": events_json(events),
        "mode": mode,
        "status": status,
        "lease": lease_seconds,
        "wake_at": wake_at,
        "custom_status": jsonb_text(custom_status),
        "set_custom": set_custom,
        "error": jsonb_text(error),
        "set_error": set_error,
    }


def _raise_fence(row: Any, run_id: str, token: uuid.UUID, expected_seq: int) -> NoReturn:
    if row is None:
        raise RunNotFound(run_id)
    if row[0] != token:
        raise LeaseLost(f"lease on run {run_id!r} was lost; another worker owns it now")
    raise ConflictError(
        f"run {run_id!r} moved on: expected last seq {expected_seq}, found {row[1]}"
    )
