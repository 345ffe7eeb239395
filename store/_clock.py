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

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..replay.vocabulary import CLAIMABLE_STATUSES
from ._db import Database
from ._schedules import SCHEDULES_CHANGED
from ._sql import _VIRTUAL_CLOCK_SCHEMAS

__all__ = ["ClockState", "VirtualClock", "drop_schema", "install_virtual_clock"]

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
    # No lease may be written while the clock moves: a claim or heartbeat that read the
    # old time and committed after the skip would hold a lease that, in the new time, has
    # already expired (its step would run twice).
    "LOCK TABLE runs, workers IN SHARE ROW EXCLUSIVE MODE",
    "UPDATE virtual_clock SET skew = skew + make_interval(secs => %(secs)s)",
    "UPDATE runs SET lease_expires_at = lease_expires_at + make_interval(secs => %(secs)s),"
    " wake_at = wake_at + make_interval(secs => %(secs)s) WHERE lease_token IS NOT NULL",
    "UPDATE workers SET last_seen = last_seen + make_interval(secs => %(secs)s)",
    # wake the claim loops, the schedulers, and every held run (a timer may be due while
    # a step runs)
    "SELECT pg_notify(%(channel)s, ''), pg_notify(%(channel)s, %(schedules)s),"
    " count(pg_notify(%(channel)s, run_id)) FROM runs WHERE lease_token IS NOT NULL",
)

# Whether every unfinished run that could move waits only on time, and for how long.
# Left out: paused and blocked runs (they wait for a person), runs waiting for a queue's
# slot (they wait for other runs), and parents whose only wait is a child (the child is
# counted). Busy: a run held by a worker, with news in its inbox, due now, or with no
# wake time (a signal or event with no timeout). The next wake is the earliest of the
# runs' wake times and the next tick of an unpaused schedule.
_IDLE = """
WITH movable AS (
    SELECT r.* FROM runs AS r
    WHERE r.status = ANY(%(statuses)s)
      AND NOT (r.queue IS NOT NULL AND r.admitted_at IS NULL AND r.lease_token IS NULL)
      AND NOT (r.wake_at IS NULL AND r.lease_token IS NULL AND NOT r.nudged
               AND EXISTS (SELECT 1 FROM runs AS c WHERE c.parent_run_id = r.run_id
                           AND c.status = ANY(%(statuses)s)))
), tick AS (
    SELECT min(due_at) AS at FROM schedules WHERE NOT paused
)
SELECT count(*) AS active,
       count(*) FILTER (WHERE lease_token IS NOT NULL OR nudged
                        OR wake_at IS NULL OR wake_at <= now()) AS busy,
       count(*) FILTER (WHERE lease_token IS NOT NULL OR nudged OR wake_at <= now()) AS working,
       extract(epoch FROM least(min(wake_at), (SELECT at FROM tick)) - now()) AS wait,
       extract(epoch FROM (SELECT at FROM tick) - now()) AS schedule_wait
FROM movable
"""


def install_virtual_clock(dsn: str, schema: str) -> None:
    """Create ``schema`` with a virtual clock (skew 0) and make every connection of
    this process to it use that clock. Migrate the schema afterwards."""
    _VIRTUAL_CLOCK_SCHEMAS.add(schema)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(sql.SQL(_INSTALL).format(schema=sql.Identifier(schema)))


def drop_schema(dsn: str, schema: str, *, lock_timeout: float = 10.0) -> bool:
    """Drop ``schema`` and everything in it (the test env's schema, at its end). Gives
    up after ``lock_timeout`` seconds if a transaction still holds locks in it (a test's
    own connection left open): returns False, the schema stays."""
    _VIRTUAL_CLOCK_SCHEMAS.discard(schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{lock_timeout}s",))
        try:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        except psycopg.errors.LockNotAvailable:
            return False
    return True


class VirtualClock:
    """The virtual clock of a schema that has one (see the module doc)."""

    def __init__(self, db: Database) -> None:
        self._db = db

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

    def look(self) -> ClockState:
        """What the runs and schedules wait for now (see ``_IDLE``)."""
        with self._db.connection() as conn:
            row = conn.execute(_IDLE, {"statuses": sorted(CLAIMABLE_STATUSES)}).fetchone()
        assert row is not None
        active, busy, working, wait, tick = row
        return ClockState(
            int(active),
            int(busy),
            int(working),
            None if wait is None else float(wait),
            None if tick is None else float(tick),
        )

    def idle_wait(self) -> float | None:
        """Seconds until the earliest wake time (of a run or a schedule) if every
        unfinished run waits only on time, else None."""
        state = self.look()
        return None if state.busy else state.wait


@dataclass(frozen=True, slots=True)
class ClockState:
    """Counts of unfinished runs that could move: ``active`` in all, ``busy`` (not
    waiting only on time), ``working`` (held, with news, or due now); and seconds until
    the earliest wake time (``wait``) and schedule tick (``tick``)."""

    active: int
    busy: int
    working: int
    wait: float | None
    tick: float | None
