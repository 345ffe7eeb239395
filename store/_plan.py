"""Units of work written once and run by a sync or an async executor.

A *plan* is a generator that yields :class:`Query` values and receives each one's rows
back (``fetchone()``, ``fetchall()`` or ``None``, as the query asks), or the query's error
thrown in at its ``yield``; what it returns is the unit's result. Plans do no I/O of their
own, so the same plan runs on a pooled connection, on an async one, or on a connection
the caller owns, inside the caller's transaction: the logic of a signal or a cancel
cascade exists once, and the sync and the async client cannot drift apart.

A :class:`Unit` pairs a plan's factory with whether it needs a transaction (several
statements that must commit together) and whether it may be run again from the start when
PostgreSQL aborts it as a deadlock victim.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import psycopg

__all__ = ["Fetch", "Plan", "Query", "Unit", "adrive", "drive"]

T = TypeVar("T")
Fetch = Literal["one", "all", "none"]


@dataclass(frozen=True, slots=True)
class Query:
    """One statement of a plan with its bound parameters, and what to fetch."""

    sql: str
    params: Mapping[str, Any] | Sequence[Any] | None = None
    fetch: Fetch = "one"


Plan = Generator[Query, Any, T]


@dataclass(frozen=True, slots=True)
class Unit(Generic[T]):
    """A plan to run: ``make()`` builds it afresh (a retried transaction starts over);
    ``tx``: its statements commit together."""

    make: Callable[[], Plan[T]]
    tx: bool = False


def drive(conn: psycopg.Connection[Any], plan: Plan[T]) -> T:
    """Run ``plan`` on ``conn`` (the caller owns the transaction)."""
    try:
        query = next(plan)
        while True:
            try:
                cur = conn.execute(query.sql, query.params)
                if query.fetch == "one":
                    rows: Any = cur.fetchone()
                elif query.fetch == "all":
                    rows = cur.fetchall()
                else:
                    rows = None
            except BaseException as exc:  # the plan may undo its part (a savepoint)
                query = plan.throw(exc)
                continue
            query = plan.send(rows)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        plan.close()


async def adrive(conn: psycopg.AsyncConnection[Any], plan: Plan[T]) -> T:
    """Run ``plan`` on an async connection (the caller owns the transaction)."""
    try:
        query = next(plan)
        while True:
            try:
                cur = await conn.execute(query.sql, query.params)
                if query.fetch == "one":
                    rows: Any = await cur.fetchone()
                elif query.fetch == "all":
                    rows = await cur.fetchall()
                else:
                    rows = None
            except BaseException as exc:  # the plan may undo its part (a savepoint)
                query = plan.throw(exc)
                continue
            query = plan.send(rows)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        plan.close()
