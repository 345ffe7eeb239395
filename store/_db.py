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

from ._errors import ConfigError, DatabaseUnavailable, InvalidConnection, StoreError
from ._migrate import migrate, set_search_path
from ._plan import Plan, Query, Unit, drive
from ._records import first_line
from ._sql import load_queries, search_path_of

__all__ = ["Conn", "Database", "Listener", "Timeouts", "check_callers_conn", "validate_dsn"]

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
        self.connect_timeout = connect_timeout
        self._pool: ConnectionPool[Conn] | None = None
        self._lock = threading.Lock()
        self._migrated = False
        self._instance: str | None = None
        self._step_pool: ConnectionPool[Conn] | None = None

    def ensure_migrated(self) -> None:
        """Migrate the schema once per Database (idempotent, safe from many processes)."""
        with self._lock:
            self._migrate_locked()

    def _migrate_locked(self) -> None:
        if self._migrated:
            return
        try:
            # No statement timeout for migrations: a future one may build an index.
            with psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=int(self.connect_timeout)
            ) as conn:
                migrate(conn, self.schema)
        except psycopg.OperationalError as exc:
            raise _connect_error(exc) from exc
        except psycopg.ProgrammingError as exc:
            raise ConfigError(
                f"invalid DSN ({first_line(exc)}); use a URI like "
                "postgresql://user:password@host:5432/dbname"
            ) from exc
        self._migrated = True

    def open(self) -> None:
        """Migrate the schema (idempotent, safe from many processes) and open the pool."""
        with self._lock:
            if self._pool is not None:
                return
            self._migrate_locked()
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
                    "connect_timeout": int(self.connect_timeout),
                    **self.timeouts.connect_kwargs(self.dsn),
                },
                configure=configure,
                open=False,
                timeout=self.connect_timeout,
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
            if self._step_pool is not None:
                self._step_pool.close()
                self._step_pool = None

    @staticmethod
    def transaction_failed(conn: Any) -> bool:
        """Whether ``conn`` (sync or async) is in a transaction a failed statement aborted."""
        from psycopg.pq import TransactionStatus

        return bool(conn.info.transaction_status == TransactionStatus.INERROR)

    @contextlib.contextmanager
    def step_transaction(self, lease_seconds: float, max_size: int = 0) -> Iterator[Conn]:
        """A connection inside a transaction, for a transactional step: from a pool of
        its own whose connections keep the server's and the role's settings (the user's
        search_path and time zone, not pgdurable's), with pgdurable's timeouts, except
        that the session may stay idle inside the transaction for up to a lease (the
        step's code may compute between statements). Commits at the end of the block,
        rolls back if it raises; errors of psycopg stay unwrapped (they are the step's)."""
        pool = self._step_pool
        if pool is None:
            with self._lock:
                if self._step_pool is None:
                    self._step_pool = ConnectionPool(
                        self.dsn,
                        min_size=0,
                        max_size=max(max_size, self._max_size),
                        kwargs={
                            "autocommit": True,
                            "connect_timeout": int(self.connect_timeout),
                            **self.timeouts.connect_kwargs(self.dsn),
                        },
                        open=False,
                        timeout=self.connect_timeout,
                        name=f"pgdurable-steps-{self.schema}",
                    )
                    self._step_pool.open(wait=False)
                pool = self._step_pool
        with pool.connection() as conn, conn.transaction():
            conn.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, true)",
                (str(int(lease_seconds * 1000)),),
            )
            yield conn

    def drive(self, conn: psycopg.Connection[Any], plan: Plan[T]) -> T:
        """Run ``plan`` on a connection the caller holds in a transaction (errors wrapped)."""
        try:
            return drive(conn, plan)
        except psycopg.Error as exc:
            raise wrap(exc) from exc

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
                f"no database connection within {self.connect_timeout:g}s; is PostgreSQL up?"
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
                f"no database connection within {self.connect_timeout:g}s; is PostgreSQL up?"
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

    def perform(self, unit: Unit[T]) -> T:
        """Run a unit of work on a pooled connection (in a transaction if it needs one)."""
        if unit.tx:
            return self.run(lambda conn: drive(conn, unit.make()))
        with self.connection() as conn:
            return drive(conn, unit.make())

    def perform_on(self, conn: psycopg.Connection[Any], unit: Unit[T]) -> T:
        """Run a unit of work on the caller's connection, inside the caller's transaction
        (started if none is open yet), never committing nor rolling it back. It runs in a
        savepoint with the schema on the search_path: a failure undoes only its own writes
        (the caller's transaction stays usable) and the caller's search_path is kept."""
        if not isinstance(conn, psycopg.Connection):
            raise TypeError(
                f"conn must be a psycopg.Connection, not {type(conn).__name__} "
                "(use app.aio for an AsyncConnection)"
            )
        check_callers_conn(conn.closed, conn.autocommit, conn.info.transaction_status)
        plan = in_callers_transaction(unit.make(), self.schema, self.instance_id())
        try:
            return drive(conn, plan)
        except psycopg.errors.UndefinedTable as exc:
            raise _wrong_database(self.schema) from exc
        except psycopg.Error as exc:
            raise wrap(exc) from exc

    def instance_id(self) -> str:
        """The id of this pgdurable installation (one per schema and database), which a
        caller's connection must show to be the same database."""
        if self._instance is None:
            with self.connection() as conn:
                row = conn.execute(_INSTANCE).fetchone()
            assert row is not None
            self._instance = str(row[0])
        return self._instance

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
                connect_timeout=int(self.connect_timeout),
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


# A caller's connection: keep its search_path, put ours first for our statements.
_ENTER_CALL = "SELECT current_setting('search_path'), set_config('search_path', %s, true)"
_LEAVE_CALL = "SELECT set_config('search_path', %s, true)"
# The installation's id with the database's oid: a database created from a template that
# holds pgdurable's schema has the same id, but not the same oid.
_INSTANCE = (
    "SELECT i.id::text || '/' || d.oid::text FROM instance i, pg_database d "
    "WHERE d.datname = current_database()"
)


def in_callers_transaction(plan: Plan[T], schema: str, instance: str) -> Plan[T]:
    """``plan`` on a caller's connection (:meth:`Database.perform_on`, and the async
    one): in a savepoint, with the schema first on the search_path and the caller's put
    back after, once the connection showed it is to the App's database (``instance``).
    If anything fails the savepoint is rolled back, so the caller's transaction stays
    usable and holds none of the plan's writes; nothing is committed."""
    yield Query("SAVEPOINT durable_call", None, "none")
    saved = yield Query(_ENTER_CALL, (search_path_of(schema),))
    try:
        found = yield Query(_INSTANCE)
        if found is None or found[0] != instance:
            raise _wrong_database(schema)
        result = yield from plan
    except GeneratorExit:
        raise
    except BaseException:
        try:
            yield Query("ROLLBACK TO SAVEPOINT durable_call", None, "none")
            yield Query("RELEASE SAVEPOINT durable_call", None, "none")
        except Exception:  # a broken connection: it is gone
            pass
        raise
    yield Query(_LEAVE_CALL, (saved[0],), "none")
    yield Query("RELEASE SAVEPOINT durable_call", None, "none")
    return result


def check_callers_conn(closed: bool, autocommit: bool, status: Any) -> None:
    """Raise a one-line error if a caller's connection cannot hold pgdurable's writes in
    its transaction."""
    from psycopg.pq import TransactionStatus

    if closed:
        raise InvalidConnection("the connection passed as conn= is closed")
    if autocommit and status == TransactionStatus.IDLE:
        raise InvalidConnection(
            "the connection passed as conn= is in autocommit mode with no transaction open, "
            "so there is none to join; open one with `with conn.transaction():` (or use "
            "autocommit=False)"
        )
    if status == TransactionStatus.INERROR:
        raise InvalidConnection(
            "the connection passed as conn= is in a failed transaction; roll it back first"
        )
    if status not in (TransactionStatus.IDLE, TransactionStatus.INTRANS):
        raise InvalidConnection(
            f"the connection passed as conn= is busy ({status.name}); pass an idle connection"
        )


def _wrong_database(schema: str) -> InvalidConnection:
    return InvalidConnection(
        f"the connection passed as conn= is to another database than the App's (no "
        f"pgdurable schema {schema!r} of this App there); connect it to the App's database"
    )


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
