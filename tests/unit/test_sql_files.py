"""The SQL files: named query blocks, migration file names, the migration lock key."""

from __future__ import annotations

import pytest

from durable.store._migrate import migration_lock_key
from durable.store._sql import load_migrations, load_queries, parse_migration_names, parse_queries


def test_blocks_run_from_their_name_line_to_the_next() -> None:
    text = """-- header comment, not a query

-- name: first
SELECT 1;

-- name: second
UPDATE t
   SET x = 1  -- a trailing comment stays
 WHERE y = %(y)s;
"""
    assert parse_queries(text) == {
        "first": "SELECT 1;",
        "second": "UPDATE t\n   SET x = 1  -- a trailing comment stays\n WHERE y = %(y)s;",
    }


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n", "defined twice"),
        ("-- name: a\n\n-- name: b\nSELECT 2;\n", "'a' is empty"),
        ("-- name: not a name\nSELECT 1;\n", "not an identifier"),
        ("-- name:\nSELECT 1;\n", "not an identifier"),
    ],
)
def test_malformed_query_files_are_rejected(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_queries(text)


def test_shipped_queries_parse() -> None:
    queries = load_queries()
    assert all(body.strip() for body in queries.values())
    queries.clear()  # a copy: clearing it does not touch the cache
    assert load_queries() == load_queries()


def test_migration_names_sort_by_version_and_ignore_other_files() -> None:
    names = ["0002_add_index.sql", "README.md", "0001_initial.sql", "__init__.py"]
    assert parse_migration_names(names) == [(1, "0001_initial"), (2, "0002_add_index")]


@pytest.mark.parametrize(
    ("names", "error"),
    [
        (["1_initial.sql"], "not named NNNN_name.sql"),
        (["0001-initial.sql"], "not named NNNN_name.sql"),
        (["0001_Initial.sql"], "not named NNNN_name.sql"),
        (["0001_a.sql", "0001_b.sql"], "share a version"),
    ],
)
def test_badly_named_migrations_are_rejected(names: list[str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_migration_names(names)


def test_shipped_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [migration.version for migration in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert all(migration.sql.strip() for migration in load_migrations())


def test_migration_lock_key_is_a_stable_bigint_per_schema() -> None:
    key = migration_lock_key("durable")
    assert key == migration_lock_key("durable")
    assert key != migration_lock_key("other")
    assert -(2**63) <= key < 2**63


def test_queries_have_no_stray_percent_signs() -> None:
    """psycopg reads every % in a query (comments included) as a placeholder: a literal
    percent sign must be written %% or the statement fails at run time."""
    import re

    from durable.store._sql import load_queries

    stray = re.compile(r"%(?!s|\(\w+\)s|%)")
    for name, text in load_queries().items():
        assert not stray.search(text.replace("%%", "")), f"query {name!r} has a stray %"
