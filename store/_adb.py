"""The async side of the store: an async pool on psycopg's ``AsyncConnection``, running
the same units of work (``_plan``) as :class:`Database` does, so a FastAPI handler starts
and reads runs without blocking its event loop, and without threads.

The one exception is the first use: resolving the schema (running the migrations, once
per process and schema) happens on the sync connection the migrations are written for, in
a worker thread (``asyncio.to_thread``), so the event loop still does not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import psycopg
import tenacity
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ._db import (
    _INSTANCE,
    Database,
    _is_retryable_conflict,
    _wrong_database,
    check_callers_conn,
    in_callers_transaction,
    wrap,
)
from ._errors import DatabaseUnavailable
from ._plan import Plan, Unit, adrive
from ._sql import SET_SEARCH_PATH, search_path_of

__all__ = ["AsyncConn", "AsyncDatabase", "AsyncListener"]

T = TypeVar("T")
AsyncConn = psycopg.AsyncConnection[TupleRow]


class AsyncDatabase:
    """An async pool over the schema of a :class:`Database` (same DSN, settings and
    queries). A pool belongs to the event loop that opened it; used from another loop
    (a second ``asyncio.run``), it opens a new pool there."""

    def __init__(self, db: Database, *, max_size: int = 10, own_settings: bool = True) -> None:
        """``own_settings``: pgdurable's search_path and time zone on every connection
        (the client's pool); False keeps the server's and role's (transactional steps)."""
        self.db = db
        self._max_size = max_size
        self._own_settings = own_settings
        self._pool: AsyncConnectionPool[AsyncConn] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._instance: str | None = None

    async def open(self) -> AsyncConnectionPool[AsyncConn]:
        """Migrate the schema if this process has not yet, and open the pool."""
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return self._pool
        await asyncio.to_thread(self.db.ensure_migrated)
        if self._pool is not None and self._loop is loop:  # opened meanwhile
            return self._pool
        db = self.db
        schema = db.schema

        async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
            await conn.execute(SET_SEARCH_PATH, (search_path_of(schema), False))
            await conn.execute("SET TimeZone = 'UTC'")

        pool: AsyncConnectionPool[AsyncConn] = AsyncConnectionPool(
            db.dsn,
            min_size=1 if self._own_settings else 0,
            max_size=self._max_size,
            kwargs={
                "autocommit": True,
                "connect_timeout": int(db.connect_timeout),
                **db.timeouts.connect_kwargs(db.dsn),
            },
            configure=configure if self._own_settings else None,
            open=False,
            timeout=db.connect_timeout,
            name=f"pgdurable-async-{schema}",
        )
        await pool.open(wait=False)
        self._pool, self._loop = pool, loop
        return pool

    async def close(self) -> None:
        """Close the pool (from the loop that opened it)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def abandon(self) -> None:
        """Close the pool from outside any event loop (its loop may be gone, as after
        ``asyncio.run``): on its loop if that can still run, else connection by
        connection."""
        pool, self._pool = self._pool, None
        loop, self._loop = self._loop, None
        if pool is None:
            return
        if loop is not None and not loop.is_closed() and not loop.is_running():
            with contextlib.suppress(Exception):
                loop.run_until_complete(pool.close())
                return
        for conn in list(getattr(pool, "_pool", ())):
            with contextlib.suppress(Exception):
                conn.pgconn.finish()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConn]:
        """A pooled async connection, with errors wrapped."""
        pool = await self.open()
        try:
            async with pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise DatabaseUnavailable(
                f"no database connection within {self.db.connect_timeout:g}s; is PostgreSQL up?"
            ) from exc
        except psycopg.Error as exc:
            raise wrap(exc) from exc

    async def perform(self, unit: Unit[T]) -> T:
        """Run a unit of work on a pooled connection (in a transaction if it needs one;
        retried like :meth:`Database.run` when it loses a deadlock)."""
        if not unit.tx:
            async with self.connection() as conn:
                return await adrive(conn, unit.make())
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_is_retryable_conflict),
            stop=tenacity.stop_after_attempt(5),
            wait=tenacity.wait_random_exponential(multiplier=0.01, max=0.2),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                async with self.connection() as conn, conn.transaction():
                    return await adrive(conn, unit.make())
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.asynccontextmanager
    async def step_transaction(self, lease_seconds: float) -> AsyncIterator[AsyncConn]:
        """:meth:`Database.step_transaction` for an ``async def`` transactional step (use
        an AsyncDatabase made with ``own_settings=False``)."""
        pool = await self.open()
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, true)",
                (str(int(lease_seconds * 1000)),),
            )
            yield conn

    async def drive(self, conn: psycopg.AsyncConnection[Any], plan: Plan[T]) -> T:
        """Run ``plan`` on an async connection the caller holds in a transaction."""
        try:
            return await adrive(conn, plan)
        except psycopg.Error as exc:
            raise wrap(exc) from exc

    async def perform_on(self, conn: psycopg.AsyncConnection[Any], unit: Unit[T]) -> T:
        """:meth:`Database.perform_on` for an ``AsyncConnection``."""
        if not isinstance(conn, psycopg.AsyncConnection):
            raise TypeError(
                f"conn must be a psycopg.AsyncConnection with app.aio, not {type(conn).__name__}"
            )
        check_callers_conn(conn.closed, conn.autocommit, conn.info.transaction_status)
        plan = in_callers_transaction(unit.make(), self.db.schema, await self.instance_id())
        try:
            return await adrive(conn, plan)
        except psycopg.errors.UndefinedTable as exc:
            raise _wrong_database(self.db.schema) from exc
        except psycopg.Error as exc:
            raise wrap(exc) from exc

    async def instance_id(self) -> str:
        """See :meth:`Database.instance_id`."""
        if self._instance is None:
            async with self.connection() as conn:
                row = await (await conn.execute(_INSTANCE)).fetchone()
            assert row is not None
            self._instance = str(row[0])
        return self._instance

    async def listener(self, *channels: str) -> AsyncListener:
        """A dedicated async connection that LISTENs on ``channels``."""
        db = self.db
        try:
            conn = await psycopg.AsyncConnection.connect(
                db.dsn,
                autocommit=True,
                connect_timeout=int(db.connect_timeout),
                **db.timeouts.connect_kwargs(db.dsn),
            )
        except psycopg.Error as exc:
            raise wrap(exc) from exc
        try:
            for channel in channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except psycopg.Error as exc:
            await conn.close()
            raise wrap(exc) from exc
        return AsyncListener(conn)


class AsyncListener:
    """Notifications on the channels a dedicated async connection LISTENs on."""

    def __init__(self, conn: AsyncConn) -> None:
        self._conn = conn

    async def wait(self, timeout: float) -> list[str]:
        """The payloads that arrive within ``timeout`` seconds (returns at the first);
        raises :class:`DatabaseUnavailable` when the connection breaks."""
        try:
            return [n.payload async for n in self._conn.notifies(timeout=timeout, stop_after=1)]
        except psycopg.Error as exc:
            raise wrap(exc) from exc

    async def close(self) -> None:
        """Close the connection."""
        await self._conn.close()
