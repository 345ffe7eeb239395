"""One autocommit statement on a connection of this thread's own, for the apps the
acceptance tests run in worker subprocesses (``$DURABLE_DSN`` names the database): what a
step records there is committed at once, whatever happens to the step afterwards."""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg

_local = threading.local()


def execute(statement: str, params: tuple[Any, ...]) -> Any:
    """Run ``statement``; the first column of its first row (reconnects once)."""
    for attempt in (1, 2):
        conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(os.environ["DURABLE_DSN"], autocommit=True)
                _local.conn = conn
            row = conn.execute(statement, params).fetchone()  # type: ignore[arg-type]
            return row[0] if row else None
        except psycopg.OperationalError:
            _local.conn = None
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
