"""The store's client-side operations: signals, latched events, control messages, and
reading runs. The worker's path (claims, appends, leases) stays in ``_store``."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.errors
from psycopg.rows import TupleRow

from ..replay.errors import (
    ConflictError,
    RunNotActive,
    RunNotFound,
)
from ._records import NewEvent, RunLock, StoredEvent, _events_json, _jsonb

__all__ = ["ClientOps"]


class ClientOps:
    """Client-side statements; :class:`durable.store.Store` inherits them."""

    if TYPE_CHECKING:
        channel: str
        _q: dict[str, str]

        def connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[TupleRow]]: ...

        def transaction(
            self,
        ) -> contextlib.AbstractContextManager[psycopg.Connection[TupleRow]]: ...

    # -- client operations ---------------------------------------------------------

    def send_signal(self, run_id: str, name: str, payload: Any) -> int:
        """Put a signal in the run's inbox and wake it; returns the signal id."""
        with self.connection() as conn:
            row = conn.execute(
                self._q["send_signal"],
                {
                    "run_id": run_id,
                    "name": name,
                    "payload": _jsonb(payload),
                    "channel": self.channel,
                },
            ).fetchone()
            if row is None:
                status = conn.execute(self._q["run_status"], {"run_id": run_id}).fetchone()
                if status is None:
                    raise RunNotFound(run_id)
                raise RunNotActive(run_id, str(status[0]))
        return int(row[1])

    def emit_event(self, key: str, payload: Any) -> bool:
        """Latch ``key`` (first write wins) and wake every run waiting for it."""
        with self.transaction() as conn:
            conn.execute(self._q["key_lock"], {"key": key})
            row = conn.execute(
                self._q["latched_put"], {"key": key, "payload": _jsonb(payload)}
            ).fetchone()
            if row is None:
                return False
            conn.execute(self._q["wake_waiters"], {"key": key, "channel": self.channel})
        return True

    def lock_run(self, conn: psycopg.Connection[Any], run_id: str) -> RunLock:
        """Lock a run's row for a client-side change (inside a tx)."""
        row = conn.execute(self._q["lock_run"], {"run_id": run_id}).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return RunLock(
            run_id=row[0],
            workflow=row[1],
            status=row[2],
            leased=bool(row[3] is not None and row[4]),
            last_seq=row[5],
            history_start=row[6],
            started=row[7] is not None,
            parent_run_id=row[8],
            parent_pos=row[9],
            deadline=row[10],
        )

    def direct_append(
        self,
        conn: psycopg.Connection[Any],
        lock: RunLock,
        events: Sequence[NewEvent],
        *,
        status: str,
        wake_at: datetime | None,
        error: dict[str, Any] | None = None,
        set_error: bool = False,
        finish: bool = False,
        reopen: bool = False,
    ) -> bool:
        """Append to a run nobody holds a live lease on (the caller locked the row).
        Returns whether a client watches the run (for a done notification)."""
        row = conn.execute(
            self._q["direct_append"],
            {
                "run_id": lock.run_id,
                "expected_seq": lock.last_seq,
                "new_seq": events[-1].seq if events else lock.last_seq,
                "events": _events_json(events),
                "status": status,
                "wake_at": wake_at,
                "error": _jsonb(error),
                "set_error": set_error,
                "finish": finish,
                "reopen": reopen,
            },
        ).fetchone()
        if row is None:  # pragma: no cover - the row lock makes this impossible
            raise ConflictError(f"run {lock.run_id!r} moved on during the change; try again")
        lock.last_seq = events[-1].seq if events else lock.last_seq
        lock.status = status
        return bool(row[0])

    def post_control(
        self, conn: psycopg.Connection[Any], run_id: str, kind: str, data: dict[str, Any]
    ) -> None:
        """Queue a control message for the worker holding the run's lease."""
        conn.execute(
            self._q["post_control"], {"run_id": run_id, "kind": kind, "data": _jsonb(data)}
        )

    def notify(self, conn: psycopg.Connection[Any], channel: str, payload: str) -> None:
        """pg_notify inside the caller's transaction."""
        conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    def watch(self, run_id: str) -> str:
        """Ask for a notification when the run ends; returns its current status."""
        with self.connection() as conn:
            row = conn.execute(self._q["watch"], {"run_id": run_id}).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return str(row[0])

    def status(self, run_id: str) -> str:
        """The run's status."""
        with self.connection() as conn:
            row = conn.execute(self._q["run_status"], {"run_id": run_id}).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return str(row[0])

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run's projection row plus its start and end event data."""
        with self.connection() as conn:
            cur = conn.execute(self._q["get_run"], {"run_id": run_id})
            row = cur.fetchone()
            if row is None:
                raise RunNotFound(run_id)
            names = [d.name for d in cur.description or ()]
        return dict(zip(names, row, strict=True))

    def history(self, run_id: str) -> list[StoredEvent]:
        """The run's log in order."""
        with self.connection() as conn:
            rows = conn.execute(self._q["history"], {"run_id": run_id}).fetchall()
            if (
                not rows
                and conn.execute(self._q["run_status"], {"run_id": run_id}).fetchone() is None
            ):
                raise RunNotFound(run_id)
        return [StoredEvent(run_id, r[0], r[1], r[2], r[3]) for r in rows]

    def active_children(self, conn: psycopg.Connection[Any], run_id: str) -> list[str]:
        """Children of ``run_id`` that have not ended."""
        return [r[0] for r in conn.execute(self._q["active_children"], {"run_id": run_id})]

    def list_runs(
        self,
        *,
        workflow: str | None,
        status: str | None,
        search: str | None,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of runs, newest first, and the total that match."""
        pattern = None if search is None else f"%{_escape_like(search)}%"
        params = {
            "workflow": workflow,
            "status": status,
            "search": pattern,
            "limit": limit,
            "offset": offset,
        }
        with self.connection() as conn:
            cur = conn.execute(self._q["list_runs"], params)
            rows = cur.fetchall()
            names = [d.name for d in cur.description or ()]
            if rows:
                total = int(rows[0][-1])
            else:
                total_row = conn.execute(self._q["count_runs"], params).fetchone()
                total = int(total_row[0]) if total_row else 0
        return [dict(zip(names[:-1], r[:-1], strict=True)) for r in rows], total

    def stats(self) -> list[tuple[str, str, int]]:
        """(workflow, status, count) for every pair present."""
        with self.connection() as conn:
            return [(r[0], r[1], int(r[2])) for r in conn.execute(self._q["stats"])]

    def prune_batch(self, cutoff: datetime, batch: int) -> tuple[int, int, int]:
        """Delete up to ``batch`` ended runs older than ``cutoff`` with their rows; returns
        (runs, events, signals) deleted. One short transaction per call."""
        with self.connection() as conn:
            row = conn.execute(
                self._q["prune_batch"], {"cutoff": cutoff, "batch": batch}
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
