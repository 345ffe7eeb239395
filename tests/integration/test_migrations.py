"""Migrations: idempotent, exactly once under concurrency, any schema name, atomic per file."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from psycopg import sql

from durable import DatabaseUnavailable, StoreError
from durable.store._migrate import migrate, migration_lock_key
from durable.store._sql import Migration, load_migrations

SHIPPED = [m.name for m in load_migrations()]


def _catalog(conn: psycopg.Connection[Any], schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything about ``schema`` a migration can change: tables, columns, indexes, ..."""
    queries = {
        "tables": "SELECT table_name, table_type FROM information_schema.tables"
        " WHERE table_schema = %(s)s ORDER BY 1",
        "columns": "SELECT table_name, column_name, ordinal_position, data_type,"
        " column_default, is_nullable FROM information_schema.columns"
        " WHERE table_schema = %(s)s ORDER BY 1, 3",
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = %(s)s ORDER BY 1, 2",
        "constraints": "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)"
        " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
        " WHERE n.nspname = %(s)s ORDER BY 1, 2",
        "functions": "SELECT p.proname, pg_get_function_identity_arguments(p.oid)"
        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = %(s)s ORDER BY 1, 2",
    }
    return {key: conn.execute(q, {"s": schema}).fetchall() for key, q in queries.items()}


def _applied(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    query = sql.SQL("SELECT version, name, applied_at FROM {}.schema_migrations ORDER BY 1")
    return conn.execute(query.format(sql.Identifier(schema))).fetchall()


def _strip_schema(catalog: dict[str, list[tuple[Any, ...]]], schema: str) -> Any:
    """The catalog with the schema's name removed, to compare two schemas."""
    spellings = [sql.Identifier(schema).as_string(None) + ".", schema + "."]

    def strip(value: Any) -> Any:
        if isinstance(value, str):
            for spelling in spellings:
                value = value.replace(spelling, "")
        return value

    return {key: [tuple(map(strip, row)) for row in rows] for key, rows in catalog.items()}


def test_shipped_migrations_exist() -> None:
    assert SHIPPED, "sql/migrations/ holds no migration"


def test_migrating_twice_changes_nothing_the_second_time(empty_dsn: str, schema: str) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert migrate(conn, schema) == SHIPPED
        catalog, applied = _catalog(conn, schema), _applied(conn, schema)

        assert migrate(conn, schema) == []

        assert _catalog(conn, schema) == catalog
        assert _applied(conn, schema) == applied
        assert [row[1] for row in applied] == SHIPPED


def test_eight_concurrent_migrators_apply_each_migration_once(
    empty_dsn: str, dsn: str, schema: str
) -> None:
    barrier = threading.Barrier(8)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(empty_dsn, autocommit=True) as conn:
                barrier.wait(timeout=30)
                results.append(migrate(conn, schema))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert len(results) == 8
    assert sorted(name for names in results for name in names) == sorted(SHIPPED)
    assert sum(1 for names in results if names) == 1  # one migrator did all the work
    with psycopg.connect(empty_dsn) as conn, psycopg.connect(dsn) as reference:
        assert [row[1] for row in _applied(conn, schema)] == SHIPPED
        assert _catalog(conn, schema) == _catalog(reference, schema)


@pytest.mark.parametrize(
    "custom",
    ["tenant_a", "my-schema", "Mixed Case", 'odd"; DROP SCHEMA public CASCADE; --'],
)
def test_custom_schema_gets_the_same_tables(empty_dsn: str, dsn: str, custom: str) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert migrate(conn, custom) == SHIPPED
        assert migrate(conn, custom) == []
        catalog = _catalog(conn, custom)
        public_tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        public_exists = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'public'"
        ).fetchone()
    with psycopg.connect(dsn) as reference:
        expected = _catalog(reference, "durable")

    assert _strip_schema(catalog, custom) == _strip_schema(expected, "durable")
    assert public_tables == (0,)
    assert public_exists == (1,)


def test_two_schemas_in_one_database_migrate_independently(empty_dsn: str) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert migrate(conn, "first") == SHIPPED
        assert migrate(conn, "second") == SHIPPED
        assert [row[1] for row in _applied(conn, "first")] == SHIPPED
        assert [row[1] for row in _applied(conn, "second")] == SHIPPED


def test_connection_settings_and_state_are_left_as_found(empty_dsn: str, schema: str) -> None:
    with psycopg.connect(empty_dsn) as conn:  # not autocommit
        before = conn.execute("SHOW search_path").fetchone()
        conn.commit()

        migrate(conn, schema)

        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SHOW search_path").fetchone() == before


def test_migrate_refuses_a_connection_inside_a_transaction(empty_dsn: str, schema: str) -> None:
    with psycopg.connect(empty_dsn) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(ValueError, match="no transaction open"):
            migrate(conn, schema)


def test_migrations_apply_in_version_order_whatever_the_input_order(empty_dsn: str) -> None:
    migrations = [
        Migration(2, "0002_fill", "INSERT INTO t VALUES (1);"),
        Migration(1, "0001_create", "CREATE TABLE t (x int);"),
    ]
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert migrate(conn, "scratch", migrations=migrations) == ["0001_create", "0002_fill"]
        assert conn.execute("SELECT x FROM scratch.t").fetchall() == [(1,)]


def test_a_failed_migration_rolls_back_alone_and_names_itself(empty_dsn: str) -> None:
    good = Migration(1, "0001_good", "CREATE TABLE a (x int);")
    bad = Migration(2, "0002_bad", "CREATE TABLE b (x int); SELECT * FROM no_such_table;")
    fixed = Migration(2, "0002_bad", "CREATE TABLE b (x int);")
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        with pytest.raises(StoreError, match="0002_bad"):
            migrate(conn, "scratch", migrations=[good, bad])

        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'scratch' ORDER BY 1"
        ).fetchall()
        assert tables == [("a",), ("schema_migrations",)]
        assert [row[1] for row in _applied(conn, "scratch")] == ["0001_good"]
        with psycopg.connect(empty_dsn, autocommit=True) as other:
            key = migration_lock_key("scratch")
            assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (True,)

        assert migrate(conn, "scratch", migrations=[good, fixed]) == ["0002_bad"]


def test_a_lost_connection_becomes_database_unavailable(empty_dsn: str, schema: str) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        with psycopg.connect(empty_dsn, autocommit=True) as killer:
            killer.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        with pytest.raises(DatabaseUnavailable, match="lost the connection"):
            migrate(conn, schema)
