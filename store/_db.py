"""The connection side of the store: the pool, transactions, dedicated connections and
LISTEN, with every psycopg error wrapped into the store's own at this boundary."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import tenacity
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from ._errors import ConfigError, DatabaseUnavailable, StoreError
from ._migrate import migrate, set_search_path
from ._records import first_line
from ._sql import load_queries

__all__ = ["Conn", "Database", "Listener", "Timeouts", "validate_dsn"]

T = TypeVar("T")
Conn = psycopg.Connection[TupleRow]


@dataclass(frozen=True)
class Timeouts:
    """How long pgdurable's connections wait, so that a network partition or a stuck
    peer costs a bounded time (seconds; docs/operations.md explains each):

    - ``statement``: PostgreSQL's ``statement_timeout`` for every statement;
    - ``lock``: ``lock_timeout``: a client call that needs a row a cut-off worker still
      locks gives up after this, with one line saying so;
    - ``idle_in_transaction``: ``idle_in_transaction_session_timeout``: the server ends a
      session that stays silent inside a transaction (a worker cut off in the middle of
      one), which frees its row locks so another worker can take its runs over;
    - ``keepalive_*``: TCP keepalives (idle, interval, count) and ``tcp_user_timeout``, so
      either side notices a peer that vanished within about ``idle + interval * count``
      instead of the operating system's two hours.

    The defaults fit the worker's default 30 s lease; :meth:`for_lease` scales them.
    """

    statement: float = 60.0
    lock: float = 10.0
    idle_in_transaction: float = 10.0
    keepalive_idle: float = 10.0
    keepalive_interval: float = 5.0
    keepalive_count: int = 3

    @classmethod
    def for_lease(cls, lease_seconds: float) -> Timeouts:
        """Timeouts for workers with this lease: a stuck session or a dead peer is noticed
        well within a lease, so another worker takes the runs over about on time."""
        third = max(lease_seconds / 3.0, 1.0)
        return cls(
            statement=max(2 * lease_seconds, 30.0),
            lock=third,
            idle_in_transaction=third,
            keepalive_idle=third,
            keepalive_interval=max(third / 2, 1.0),
            keepalive_count=3,
        )

    def connect_kwargs(self, dsn: str) -> dict[str, Any]:
        """libpq parameters for ``psycopg.connect`` (settings the DSN names win)."""
        given = conninfo_to_dict(dsn)
        ours: dict[str, Any] = {
            "keepalives": 1,
            "keepalives_idle": max(int(self.keepalive_idle), 1),
            "keepalives_interval": max(int(self.keepalive_interval), 1),
            "keepalives_count": max(self.keepalive_count, 1),
            "tcp_user_timeout": int(
                (self.keepalive_idle + self.keepalive_interval * self.keepalive_count) * 1000
            ),
        }
        kwargs = {k: v for k, v in ours.items() if k not in given}
        settings = (
            f"-c statement_timeout={int(self.statement * 1000)} "
            f"-c lock_timeout={int(self.lock * 1000)} "
            f"-c idle_in_transaction_session_timeout={int(self.idle_in_transaction * 1000)}"
        )
        # the DSN's own options come last, so its settings win
        kwargs["options"] = f"{settings} {given['options']}" if given.get("options") else settings
        return kwargs


class Database:
    """A pool of connections to one schema of one PostgreSQL database.

    Every pooled connection is in autocommit mode with ``search_path`` set to the schema
    and the time zone set to UTC. The named queries of ``sql/queries.sql`` are ``q[name]``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "durable",
        min_size: int = 1,
        max_size: int = 20,
        connect_timeout: float = 10.0,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.timeouts = timeouts or Timeouts()
        #: NOTIFY channels: work for workers (starts, signals, nudges), done for result()
        self.work_channel = f"{schema}.work"
        self.done_channel = f"{schema}.done"
        self.q = load_queries()
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._pool: ConnectionPool[Conn] | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        """Migrate the schema (idempotent, safe from many processes) and open the pool."""
        with self._lock:
            if self._pool is not None:
                return
            try:
                # No statement timeout for migrations: a future one may build an index.
                with psycopg.connect(
                    self.dsn, autocommit=True, connect_timeout=int(self._connect_timeout)
                ) as conn:
                    migrate(conn, self.schema)
            except psycopg.OperationalError as exc:
                raise _connect_error(exc) from exc
            except psycopg.ProgrammingError as exc:
                raise ConfigError(
                    f"invalid DSN ({first_line(exc)}); use a URI like "
                    "postgresql://user:password@host:5432/dbname"
                ) from exc
            schema = self.schema

            def configure(conn: psycopg.Connection[Any]) -> None:
                set_search_path(conn, schema)
                conn.execute("SET TimeZone = 'UTC'")

            pool: ConnectionPool[Conn] = ConnectionPool(
                self.dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                kwargs={
                    "autocommit": True,
                    "connect_timeout": int(self._connect_timeout),
                    **self.timeouts.connect_kwargs(self.dsn),
                },
                configure=configure,
                open=False,
                timeout=self._connect_timeout,
                name=f"pgdurable-{schema}",
            )
            pool.open(wait=False)
            self._pool = pool

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    @contextlib.contextmanager
    def connection(self) -> Iterator[Conn]:
        """A pooled connection, with errors wrapped."""
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
        except psycopg.Error as exc:
            raise wrap(exc) from exc

    @property
    def can_lend(self) -> bool:
        """Whether the pool is large enough to lend a connection for long (see borrow)."""
        return self._max_size > 2

    def borrow(self) -> Conn:
        """A pooled connection kept by the caller until :meth:`give_back`: for a caller
        that sends statements back to back (the group appender). It counts against the
        pool's size; waits for one like :meth:`connection`."""
        if self._pool is None:
            self.open()
        assert self._pool is not None
        try:
            return self._pool.getconn()
        except PoolTimeout as exc:
            raise DatabaseUnavailable(
                f"no database connection within {self._connect_timeout:g}s; is PostgreSQL up?"
            ) from exc

    def give_back(self, conn: Conn) -> None:
        """Return a borrowed connection (a broken one is replaced by the pool)."""
        pool = self._pool
        if pool is None:
            conn.close()
            return
        try:
            pool.putconn(conn)
        except Exception:  # the pool was closed meanwhile, or does not know it
            conn.close()

    def run(self, body: Callable[[Conn], T]) -> T:
        """Run ``body(conn)`` in one transaction, again (up to five times, with a short
        backoff) if PostgreSQL aborts it as a deadlock victim or a serialization failure.
        Units of work that lock several runs (a cancel with children, a child's end
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

    def listener(self, *channels: str) -> Listener:
        """A dedicated connection that LISTENs on ``channels``."""
        conn = self._connect()
        try:
            for channel in channels:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except psycopg.Error as exc:
            conn.close()
            raise wrap(exc) from exc
        return Listener(conn)

    def _connect(self) -> Conn:
        try:
            return psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=int(self._connect_timeout),
                **self.timeouts.connect_kwargs(self.dsn),
            )
        except psycopg.Error as exc:
            raise wrap(exc) from exc


class Listener:
    """Notifications on the channels a dedicated connection LISTENs on."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    def wait(self, timeout: float) -> list[str]:
        """The payloads that arrive within ``timeout`` seconds (returns at the first).

        Raises :class:`DatabaseUnavailable` when the connection breaks: close it and open
        a new listener (notifications sent meanwhile are lost; poll for what they said).
        """
        try:
            return [n.payload for n in self._conn.notifies(timeout=timeout, stop_after=1)]
        except psycopg.Error as exc:
            raise wrap(exc) from exc

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def validate_dsn(dsn: str) -> None:
    """Raise :class:`ConfigError` if ``dsn`` is not a PostgreSQL connection string (without
    connecting)."""
    try:
        conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise ConfigError(
            f"not a valid PostgreSQL connection string ({first_line(exc)}); use "
            "postgresql://user@host:port/dbname or 'host=... dbname=...'"
        ) from None


def _connect_error(exc: psycopg.OperationalError) -> DatabaseUnavailable:
    """What a failed first connection means, in words a user can act on."""
    text = first_line(exc)
    if "authentication failed" in text or "no password supplied" in text:
        return DatabaseUnavailable(
            f"PostgreSQL refused the login: authentication failed ({text}); check the user "
            "and password in the DSN (or PGPASSWORD / ~/.pgpass) and the server's pg_hba.conf"
        )
    if "does not exist" in text:
        return DatabaseUnavailable(
            f"PostgreSQL answered but refused: {text}; check the database and user names in the DSN"
        )
    return DatabaseUnavailable(
        f"cannot reach PostgreSQL ({text}); check the DSN and that the server is running"
    )


def wrap(exc: psycopg.Error) -> StoreError:
    """The store's error for a psycopg error (raise it ``from exc``)."""
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return StoreError(
            "a row it needs stayed locked past lock_timeout (by a worker cut off from the "
            f"database, or a long transaction): {first_line(exc)}; try again"
        )
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return StoreError(
            f"the statement ran past statement_timeout ({first_line(exc)}); try again"
        )
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseUnavailable(f"database connection failed: {first_line(exc)}")
    return StoreError(f"database error: {first_line(exc)}")


def _is_retryable_conflict(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    return isinstance(cause, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure)
