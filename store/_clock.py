"""A virtual clock for a schema (the testing kit's time skipping).

Every time the runtime's SQL uses is ``now()``. A schema with a virtual clock holds its
own ``now()`` function, ``pg_catalog.now()`` plus the skew in its ``virtual_clock`` row,
and every connection to that schema puts ``pg_catalog`` after the schema on its
search_path (``_sql.search_path_of``), so the schema's ``now()`` shadows the built-in one
in every query, every function and every column default, with no SQL changed. A
production schema has no such function: its ``now()`` is PostgreSQL's.

The clock is installed before the schema is migrated (the functions of the migrations
capture the search_path they were created with). Skipping moves the skew, and moves
every live lease (and worker heartbeat) forward by as much, so a skip never makes a
held run look abandoned.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ..replay.vocabulary import CLAIMABLE_STATUSES
from ._db import Database
from ._schedules import SCHEDULES_CHANGED
from ._sql import _VIRTUAL_CLOCK_SCHEMAS

__all__ = ["VirtualClock", "drop_schema", "install_virtual_clock"]

_INSTALL = """
CREATE SCHEMA {schema};
CREATE TABLE {schema}.virtual_clock (
    one   boolean  PRIMARY KEY DEFAULT true CHECK (one),
    skew  interval NOT NULL DEFAULT interval '0'
);
INSERT INTO {schema}.virtual_clock DEFAULT VALUES;
CREATE FUNCTION {schema}.now() RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT pg_catalog.now() + (SELECT skew FROM {schema}.virtual_clock) $$;
"""

# Moves the clock and, by as much, what measures real time while the clock is skipped:
# live leases (wake_at of a held run is its lease's end) and workers' heartbeats.
_SKIP = (
    "UPDATE virtual_clock SET skew = skew + make_interval(secs => %(secs)s)",
    "UPDATE runs SET lease_expires_at = lease_expires_at + make_interval(secs => %(secs)s),"
    " wake_at = wake_at + make_interval(secs => %(secs)s) WHERE lease_token IS NOT NULL",
    "UPDATE workers SET last_seen = last_seen + make_interval(secs => %(secs)s)",
    # wake the claim loops, the schedulers, and every held run (a timer may be due while
    # a step runs)
    "SELECT pg_notify(%(channel)s, ''), pg_notify(%(channel)s, %(schedules)s),"
    " count(pg_notify(%(channel)s, run_id)) FROM runs WHERE lease_token IS NOT NULL",
)

# Whether every unfinished run that could move waits only on time, and for how long:
# none held by a worker, none with news in its inbox, none due now, and each with a wake
# time (a run waiting for a signal with no timeout has none). Paused and blocked runs
# wait for a person, not for time: they are left out.
_IDLE = """
SELECT count(*) AS active,
       count(*) FILTER (WHERE lease_token IS NOT NULL OR nudged OR wake_at IS NULL
                        OR wake_at <= now()) AS busy,
       extract(epoch FROM min(wake_at) - now()) AS wait
FROM runs WHERE status = ANY(%(statuses)s)
"""

_NOW = "SELECT now()"


def install_virtual_clock(dsn: str, schema: str) -> None:
    """Create ``schema`` with a virtual clock (skew 0) and make every connection of
    this process to it use that clock. Migrate the schema afterwards."""
    _VIRTUAL_CLOCK_SCHEMAS.add(schema)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(sql.SQL(_INSTALL).format(schema=sql.Identifier(schema)))


def drop_schema(dsn: str, schema: str) -> None:
    """Drop ``schema`` and everything in it (the test env's schema, at its end)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    _VIRTUAL_CLOCK_SCHEMAS.discard(schema)


class VirtualClock:
    """The virtual clock of a schema that has one (see the module doc)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def now(self) -> Any:
        """The schema's ``now()`` (a new transaction's), aware."""
        with self._db.connection() as conn:
            row = conn.execute(_NOW).fetchone()
        assert row is not None
        return row[0]

    def skip(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead (with live leases), and wake the workers."""
        params = {
            "secs": float(seconds),
            "channel": self._db.work_channel,
            "schedules": SCHEDULES_CHANGED,
        }
        with self._db.connection() as conn, conn.transaction():
            for statement in _SKIP:
                conn.execute(statement, params)

    def idle_wait(self) -> float | None:
        """Seconds until the earliest wake time if every unfinished run waits only on
        time (see ``_IDLE``), else None (also when no run is unfinished)."""
        with self._db.connection() as conn:
            row = conn.execute(_IDLE, {"statuses": sorted(CLAIMABLE_STATUSES)}).fetchone()
        assert row is not None
        active, busy, wait = row
        if not active or busy:
            return None
        return float(wait)
