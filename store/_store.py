"""``Store``: the one object the rest of pgdurable talks to PostgreSQL through."""

from __future__ import annotations

from typing import Any

from ._db import Database, Listener
from ._family import Family
from ._group import GroupAppender
from ._leases import LeaseStore
from ._runs import RunStore
from ._schedules import ScheduleStore

__all__ = ["Store"]


class Store:
    """The database of one pgdurable schema, by job:

    - ``runs``: the client's units of work (create, signal, emit, control, retry, reads);
    - ``leases``: the worker's (claim, fenced appends, heartbeats, inbox syncs, ends);
    - :meth:`group_appender`: group commit of concurrent appends of different runs;
    - :meth:`listener`: LISTEN on the ``work_channel`` / ``done_channel``.

    :meth:`open` migrates the schema and opens the pool (each collaborator also opens it
    on first use); :meth:`close` releases every connection.
    """

    def __init__(self, dsn: str, **options: Any) -> None:
        """``options`` are those of :class:`Database` (``schema``, ``min_size``,
        ``max_size``, ``connect_timeout``, ``timeouts``)."""
        self.db = Database(dsn, **options)
        family = Family(self.db)
        self.runs = RunStore(self.db, family)
        self.leases = LeaseStore(self.db, family)
        self.schedules = ScheduleStore(self.db, family, self.runs)

    @property
    def dsn(self) -> str:
        """The DSN the store connects with."""
        return self.db.dsn

    @property
    def schema(self) -> str:
        """The schema that holds pgdurable's tables."""
        return self.db.schema

    @property
    def work_channel(self) -> str:
        """Notified on starts, signals and nudges: workers LISTEN to it."""
        return self.db.work_channel

    @property
    def done_channel(self) -> str:
        """Notified when a watched run ends: ``result()`` LISTENs to it."""
        return self.db.done_channel

    def open(self) -> Store:
        """Migrate the schema (idempotent, safe from many processes) and open the pool."""
        self.db.open()
        return self

    def close(self) -> None:
        """Close every pooled connection."""
        self.db.close()

    def group_appender(self) -> GroupAppender:
        """A new group-commit appender (one per worker; it keeps its own connection)."""
        return GroupAppender(self.db, self.leases)

    def listener(self, *channels: str) -> Listener:
        """A dedicated connection LISTENing on ``channels``."""
        return self.db.listener(*channels)
