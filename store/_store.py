"""The event store: every statement pgdurable sends to PostgreSQL goes through here."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

import psycopg
import psycopg.errors
import tenacity
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from ..replay.errors import (
    ConfigError,
    ConflictError,
    DatabaseUnavailable,
    LeaseLost,
    RunNotFound,
    StoreError,
)
from ._client import ClientOps
from ._migrate import migrate, set_search_path
from ._records import (
    ACTIVE,
    TERMINAL,
    AppendResult,
    Claim,
    NewEvent,
    RunLock,
    StoredEvent,
    _events_json,
    _first_line,
    _jsonb,
)
from ._sql import load_queries

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "AppendResult",
    "Claim",
    "NewEvent",
    "RunLock",
    "Store",
    "StoredEvent",
]

T = TypeVar("T")


class Store(ClientOps):
    """Owns the connection pool and every query of pgdurable.

    Each public method is one transaction; the hot-path methods (:meth:`append`,
    :meth:`claim`, :meth:`load_events`) are one round trip each.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "durable",
        min_size: int = 1,
        max_size: int = 20,
        connect_timeout: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.channel = f"{schema}.work"
        self.done_channel = f"{schema}.done"
        self._q = load_queries()
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._pool: ConnectionPool[psycopg.Connection[TupleRow]] | None = None
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------

    def open(self) -> Store:
        """Open the pool and migrate the schema (idempotent, safe from many processes)."""
        with self._lock:
            if self._pool is not None:
                return self
            try:
                with psycopg.connect(
                    self.dsn, autocommit=True, connect_timeout=int(self._connect_timeout)
                ) as conn:
                    migrate(conn, self.schema)
            except psycopg.OperationalError as exc:
                raise DatabaseUnavailable(
                    f"cannot reach PostgreSQL ({_first_line(exc)}); check the DSN and that "
                    "the server is running"
                ) from exc
            except psycopg.ProgrammingError as exc:
                raise ConfigError(
                    f"invalid DSN ({_first_line(exc)}); use a URI like "
                    "postgresql://user:password@host:5432/dbname"
                ) from exc
            schema = self.schema

            def configure(conn: psycopg.Connection[Any]) -> None:
                set_search_path(conn, schema)
                conn.execute("SET TimeZone = 'UTC'")

            pool: ConnectionPool[psycopg.Connection[TupleRow]] = ConnectionPool(
                self.dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                kwargs={"autocommit": True, "connect_timeout": int(self._connect_timeout)},
                configure=configure,
                open=False,
                timeout=self._connect_timeout,
                name=f"pgdurable-{schema}",
            )
            pool.open(wait=False)
            self._pool = pool
        return self

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """A pooled connection (autocommit, search_path set), with errors wrapped."""
        if self._pool is None:
            self.open()
        assert self._pool is not None
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise DatabaseUnavailable(
                f"no database connection within {self._connect_timeout:g}s; is PostgreSQL up?"
            ) from exc
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"database connection failed: {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"database error: {_first_line(exc)}") from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """A pooled connection inside one transaction."""
        with self.connection() as conn, conn.transaction():
            yield conn

    def run_in_tx(self, body: Callable[[psycopg.Connection[TupleRow]], T]) -> T:
        """Run ``body(conn)`` in one transaction, again (up to five times, with a short
        backoff) if PostgreSQL aborts it as a deadlock victim or a serialization failure.
        Client operations that lock several runs (cancel with children, a child's end
        telling its parent) can meet in opposite orders; one of them is retried."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_retryable_conflict),
            stop=tenacity.stop_after_attempt(5),
            wait=tenacity.wait_random_exponential(multiplier=0.01, max=0.2),
            reraise=True,
        )
        for attempt in retrying:
            with attempt, self.connection() as conn, conn.transaction():
                return body(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    def dedicated_connection(self) -> psycopg.Connection[TupleRow]:
        """A connection of its own (autocommit, search_path and time zone set), for a
        caller that sends statements back to back and wants no pool checkout each time."""
        conn = self.connect_listener()
        try:
            set_search_path(conn, self.schema)
            conn.execute("SET TimeZone = 'UTC'")
        except psycopg.Error as exc:
            conn.close()
            raise DatabaseUnavailable(f"database connection failed: {_first_line(exc)}") from exc
        return conn

    def connect_listener(self) -> psycopg.Connection[TupleRow]:
        """A dedicated connection for LISTEN (not from the pool)."""
        try:
            conn = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=int(self._connect_timeout)
            )
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"database connection failed: {_first_line(exc)}") from exc
        return conn

    def listen(self, conn: psycopg.Connection[Any], *channels: str) -> None:
        """LISTEN on the given channels (identifiers quoted, never formatted)."""
        for channel in channels:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def q(self, name: str) -> str:
        """The text of a named query."""
        return self._q[name]

    # -- starting runs -------------------------------------------------------------

    def create_run(
        self,
        *,
        run_id: str,
        workflow: str,
        events: Sequence[NewEvent],
        now: datetime,
        wake_at: datetime | None,
        idempotency_key: str | None = None,
        deadline: datetime | None = None,
        parent_run_id: str | None = None,
        parent_pos: int | None = None,
        source_run_id: str | None = None,
        notify: bool = True,
        conn: psycopg.Connection[Any] | None = None,
    ) -> tuple[str, bool]:
        """Create a run with its first events, unless the run_id or the idempotency key
        (per workflow) exists; returns ``(run_id, created)``."""
        params = {
            "run_id": run_id,
            "workflow": workflow,
            "wake_at": wake_at,
            "last_seq": events[-1].seq if events else 0,
            "idempotency_key": idempotency_key,
            "deadline": deadline,
            "parent_run_id": parent_run_id,
            "parent_pos": parent_pos,
            "source_run_id": source_run_id,
            "now": now,
            "events": _events_json(events),
            "notify": notify,
            "channel": self.channel,
        }
        with self._conn(conn) as c:
            row = c.execute(self._q["create_run"], params).fetchone()
            if row is not None:
                return str(row[0]), True
            found = c.execute(
                self._q["find_existing_run"],
                {"run_id": run_id, "workflow": workflow, "idempotency_key": idempotency_key},
            ).fetchone()
        if found is None:  # pragma: no cover - a concurrent prune between the two statements
            raise ConflictError(f"run {run_id!r} could not be created; try again")
        return str(found[0]), False

    # -- the worker's path ---------------------------------------------------------

    def claim(
        self, owner: str, limit: int, lease_seconds: float, workflows: Sequence[str]
    ) -> list[Claim]:
        """Lease up to ``limit`` runnable runs of the given workflows (FOR UPDATE SKIP
        LOCKED); runs of workflows this worker does not know are left to others."""
        with self.connection() as conn:
            rows = conn.execute(
                self._q["claim"],
                {
                    "owner": owner,
                    "limit": limit,
                    "lease": lease_seconds,
                    "workflows": list(workflows),
                },
            ).fetchall()
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
                    events=[] if r[9] else None,
                )
            if r[10] is not None and claim.events is not None:
                claim.events.append(StoredEvent(r[0], r[10], r[11], r[12], r[13]))
        return list(claims.values())

    def load_events(self, after: dict[str, int]) -> dict[str, list[StoredEvent]]:
        """Events of several runs with ``seq > after[run_id]``, in order, in one query."""
        out: dict[str, list[StoredEvent]] = {run_id: [] for run_id in after}
        if not after:
            return out
        ids = list(after)
        with self.connection() as conn:
            rows = conn.execute(
                self._q["load_events"], {"run_ids": ids, "after": [after[i] for i in ids]}
            ).fetchall()
        for run_id, seq, type_, data, created_at in rows:
            out[run_id].append(StoredEvent(run_id, seq, type_, data, created_at))
        return out

    def append(
        self,
        *,
        run_id: str,
        token: uuid.UUID,
        expected_seq: int,
        events: Sequence[NewEvent],
        mode: Literal["hold", "release", "finish"],
        status: str,
        lease_seconds: float,
        wake_at: datetime | None = None,
        custom_status: Any = None,
        set_custom: bool = False,
        error: dict[str, Any] | None = None,
        set_error: bool = False,
        conn: psycopg.Connection[Any] | None = None,
    ) -> AppendResult:
        """Append ``events`` after ``expected_seq`` if this lease still holds the run, and
        move the projection, in one statement.

        Raises :class:`LeaseLost` (another worker took the run) or :class:`ConflictError`
        (the sequence moved): nothing is written then.
        """
        if mode == "hold" and len(events) == 1 and not set_custom and not set_error:
            return self._append_one(run_id, token, expected_seq, events[0], conn)
        params = {
            "run_id": run_id,
            "token": token,
            "expected_seq": expected_seq,
            "new_seq": events[-1].seq if events else expected_seq,
            "events": _events_json(events),
            "mode": mode,
            "status": status,
            "lease": lease_seconds,
            "wake_at": wake_at,
            "custom_status": _jsonb(custom_status),
            "set_custom": set_custom,
            "error": _jsonb(error),
            "set_error": set_error,
        }
        with self._conn(conn) as c:
            row = c.execute(self._q["append"], params).fetchone()
            if row is None:
                self._raise_fence(c, run_id, token, expected_seq)
        assert row is not None
        return AppendResult(bool(row[0]), bool(row[1]), bool(row[2]))

    def finish_simple(
        self,
        *,
        run_id: str,
        token: uuid.UUID,
        expected_seq: int,
        events: Sequence[NewEvent],
        status: str,
        custom_status: Any,
        set_custom: bool,
        error: dict[str, Any] | None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> bool:
        """End a run that has no parent and no unfinished children in one statement.
        Returns False (nothing written) when that does not apply or the fence fails; the
        caller then ends the run in a full transaction, which raises the precise error."""
        params = {
            "run_id": run_id,
            "token": token,
            "expected_seq": expected_seq,
            "new_seq": events[-1].seq,
            "events": _events_json(events),
            "status": status,
            "custom_status": _jsonb(custom_status),
            "set_custom": set_custom,
            "error": _jsonb(error),
            "done_channel": self.done_channel,
        }
        with self._conn(conn) as c:
            return c.execute(self._q["finish_simple"], params).fetchone() is not None

    def _append_one(
        self,
        run_id: str,
        token: uuid.UUID,
        expected_seq: int,
        event: NewEvent,
        conn: psycopg.Connection[Any] | None,
    ) -> AppendResult:
        params = (
            event.seq,
            run_id,
            token,
            expected_seq,
            event.seq,
            event.type,
            Jsonb(event.data),
            event.created_at,
        )
        with self._conn(conn) as c:
            row = c.execute(self._q["append_one"], params).fetchone()
            if row is None:
                self._raise_fence(c, run_id, token, expected_seq)
        assert row is not None
        return AppendResult(bool(row[0]), False, False)

    def _raise_fence(
        self, conn: psycopg.Connection[Any], run_id: str, token: uuid.UUID, expected_seq: int
    ) -> None:
        row = conn.execute(self._q["fence_check"], {"run_id": run_id}).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        if row[0] != token:
            raise LeaseLost(f"lease on run {run_id!r} was lost; another worker owns it now")
        raise ConflictError(
            f"run {run_id!r} moved on: expected last seq {expected_seq}, found {row[1]}"
        )

    def heartbeat(self, tokens: Sequence[uuid.UUID], lease_seconds: float) -> set[uuid.UUID]:
        """Extend the given leases; returns the tokens still held."""
        if not tokens:
            return set()
        with self.connection() as conn:
            rows = conn.execute(
                self._q["heartbeat"], {"tokens": list(tokens), "lease": lease_seconds}
            ).fetchall()
        return {r[0] for r in rows}

    def release(self, run_id: str, token: uuid.UUID) -> None:
        """Give a lease back so another worker can claim the run at once."""
        with self.connection() as conn:
            conn.execute(self._q["release"], {"run_id": run_id, "token": token})

    def drain_controls(self, conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
        """Delete and return the run's control messages, oldest first (inside a tx)."""
        rows = conn.execute(self._q["drain_controls"], {"run_id": run_id}).fetchall()
        rows.sort(key=lambda r: r[0])
        return [{"id": r[0], "kind": r[1], "data": r[2], "created_at": r[3]} for r in rows]

    def pop_signals(
        self, conn: psycopg.Connection[Any], run_id: str, name: str, limit: int
    ) -> list[dict[str, Any]]:
        """Delete and return the oldest ``limit`` signals of that name (inside a tx)."""
        rows = conn.execute(
            self._q["pop_signals"], {"run_id": run_id, "name": name, "limit": limit}
        ).fetchall()
        rows.sort(key=lambda r: r[0])
        return [{"id": r[0], "name": r[1], "payload": r[2], "created_at": r[3]} for r in rows]

    def latched_or_wait(
        self, conn: psycopg.Connection[Any], run_id: str, keys: Sequence[str]
    ) -> dict[str, Any]:
        """Latched payloads of ``keys``; for keys not emitted yet, register the run as a
        waiter (under the key's advisory lock, so an emission cannot slip between)."""
        found: dict[str, Any] = {}
        for key in sorted(set(keys)):
            conn.execute(self._q["key_lock"], {"key": key})
            row = conn.execute(self._q["latched_get"], {"keys": [key]}).fetchone()
            if row is not None:
                found[key] = row[1]
            else:
                conn.execute(self._q["waiter_add"], {"key": key, "run_id": run_id})
        return found

    @contextlib.contextmanager
    def _conn(self, conn: psycopg.Connection[Any] | None) -> Iterator[psycopg.Connection[Any]]:
        if conn is not None:
            yield conn
        else:
            with self.connection() as c:
                yield c


def _is_retryable_conflict(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    return isinstance(cause, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure)
