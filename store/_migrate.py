"""Schema migrations: apply ``sql/migrations/NNNN_name.sql`` once, in order, per schema.

Many processes may start at once against a fresh database; they serialise on a session
advisory lock whose key is derived from the schema name, so each migration runs exactly
once. Each migration runs in its own transaction together with its ``schema_migrations``
row, with ``search_path`` set to the schema (migration files use unqualified names and
contain no transaction control). A failed migration leaves the ones before it applied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from ..replay.errors import DurableError
from ._errors import DatabaseUnavailable, StoreError
from ._sql import SET_SEARCH_PATH, Migration, load_migrations, search_path_of, set_search_path

__all__ = ["migrate", "migration_lock_key", "set_search_path"]


def migration_lock_key(schema: str) -> int:
    """The advisory-lock key (a signed 64-bit int) that guards migrations of ``schema``."""
    digest = hashlib.blake2b(f"pgdurable.migrate:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def migrate(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    migrations: Sequence[Migration] | None = None,
) -> list[str]:
    """Bring ``schema`` up to date; return the names of the migrations applied now.

    ``conn`` must have no transaction open (autocommit or idle); it is left idle with its
    settings unchanged. ``migrations`` defaults to the files shipped in
    ``sql/migrations/``. Raises :class:`DatabaseUnavailable` if the connection fails and
    :class:`StoreError` if a migration fails (that migration is rolled back).
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ValueError("migrate() needs a connection with no transaction open")
    todo = sorted(load_migrations() if migrations is None else migrations, key=_version)
    key = migration_lock_key(schema)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            return _apply(conn, schema, todo)
        finally:
            if not conn.broken:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    except psycopg.Error as exc:
        raise _wrap(conn, exc, f"cannot migrate schema {schema!r}") from exc


def _apply(conn: psycopg.Connection[Any], schema: str, todo: list[Migration]) -> list[str]:
    ident = sql.Identifier(schema)
    with conn.transaction():
        # Check before CREATE: CREATE SCHEMA IF NOT EXISTS still needs the CREATE privilege.
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if exists.fetchone() is None:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.schema_migrations ("
                " version integer PRIMARY KEY,"
                " name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(ident)
        )
        rows = conn.execute(sql.SQL("SELECT version FROM {}.schema_migrations").format(ident))
        applied = {row[0] for row in rows.fetchall()}
    done: list[str] = []
    for migration in todo:
        if migration.version in applied:
            continue
        try:
            with conn.transaction():
                conn.execute(SET_SEARCH_PATH, (search_path_of(schema), True))
                conn.execute(migration.sql)
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.schema_migrations (version, name) VALUES (%s, %s)"
                    ).format(ident),
                    (migration.version, migration.name),
                )
        except psycopg.Error as exc:
            raise _wrap(conn, exc, f"migration {migration.name} failed") from exc
        done.append(migration.name)
    return done


def _version(migration: Migration) -> int:
    return migration.version


def _wrap(conn: psycopg.Connection[Any], exc: psycopg.Error, what: str) -> DurableError:
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if conn.broken or conn.closed:
        return DatabaseUnavailable(
            f"{what}: lost the connection to PostgreSQL ({first_line}); "
            "check that the server is running and retry"
        )
    return StoreError(f"{what}: {first_line}")
