"""The SQL files of pgdurable: named queries, migrations, and the search_path helper.

``sql/queries.sql`` is a sequence of named blocks::

    -- name: claim_runs
    UPDATE runs SET ...

Each block runs from its ``-- name:`` line to the next one. Text before the first block
(a header comment) is ignored. Queries use unqualified table names: every pooled
connection has its ``search_path`` set to the schema by :func:`set_search_path`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

__all__ = [
    "SET_SEARCH_PATH",
    "Migration",
    "load_migrations",
    "load_queries",
    "parse_migration_names",
    "parse_queries",
    "search_path_of",
    "set_search_path",
]

_NAME_LINE = re.compile(r"^--\s*name:(?P<name>.*)$")
_QUERY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<slug>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: ``version`` 1 and ``name`` ``"0001_initial"`` for 0001_initial.sql."""

    version: int
    name: str
    sql: str


def parse_queries(text: str) -> dict[str, str]:
    """Split the text of a queries file into ``{name: sql}``; raises ValueError if malformed.

    Names must be identifiers and unique; a block must hold some SQL.
    """
    queries: dict[str, str] = {}
    name: str | None = None
    body: list[str] = []

    def close_block() -> None:
        if name is None:
            return
        text = "\n".join(body).strip()
        if not text:
            raise ValueError(f"query {name!r} is empty")
        queries[name] = text

    for number, line in enumerate(text.splitlines(), start=1):
        match = _NAME_LINE.match(line.strip())
        if match is None:
            body.append(line)
            continue
        close_block()
        name, body = match["name"].strip(), []
        if not _QUERY_NAME.match(name):
            raise ValueError(f"line {number}: query name {name!r} is not an identifier")
        if name in queries:
            raise ValueError(f"line {number}: query {name!r} is defined twice")
    close_block()
    return queries


@functools.cache
def _queries() -> dict[str, str]:
    text = resources.files("durable.sql").joinpath("queries.sql").read_text(encoding="utf-8")
    try:
        return parse_queries(text)
    except ValueError as exc:
        raise ValueError(f"sql/queries.sql: {exc}") from exc


def load_queries() -> dict[str, str]:
    """The named queries of ``sql/queries.sql`` (parsed once per process; a fresh dict)."""
    return dict(_queries())


def parse_migration_names(names: list[str]) -> list[tuple[int, str]]:
    """``[(version, name)]`` sorted by version, from migration file names.

    Files that do not end in ``.sql`` are ignored; a ``.sql`` file not named
    ``NNNN_lowercase_words.sql`` or a version used twice raises ValueError.
    """
    found: dict[int, str] = {}
    for filename in names:
        if not filename.endswith(".sql"):
            continue
        match = _MIGRATION_FILE.match(filename)
        if match is None:
            raise ValueError(f"migration file {filename!r} is not named NNNN_name.sql")
        version = int(match["version"])
        if version in found:
            raise ValueError(f"migrations {found[version]!r} and {filename!r} share a version")
        found[version] = filename.removesuffix(".sql")
    return sorted(found.items())


@functools.cache
def _migrations() -> tuple[Migration, ...]:
    folder = resources.files("durable.sql").joinpath("migrations")
    entries = {entry.name: entry for entry in folder.iterdir() if entry.is_file()}
    return tuple(
        Migration(version, name, entries[f"{name}.sql"].read_text(encoding="utf-8"))
        for version, name in parse_migration_names(list(entries))
    )


def load_migrations() -> list[Migration]:
    """The migrations shipped in ``sql/migrations/``, in version order (read once)."""
    return list(_migrations())


#: Schemas whose ``now()`` is a virtual clock (``store._clock``): their search_path puts
#: ``pg_catalog`` after the schema, so the schema's own ``now()`` shadows the built-in.
_VIRTUAL_CLOCK_SCHEMAS: set[str] = set()


def search_path_of(schema: str) -> str:
    """The ``search_path`` value for ``schema``: the schema, quoted as an identifier, and
    ``pg_catalog`` after it if the schema has a virtual clock."""
    ident = '"' + schema.replace('"', '""') + '"'
    return f"{ident}, pg_catalog" if schema in _VIRTUAL_CLOCK_SCHEMAS else ident


def set_search_path(conn: psycopg.Connection[Any], schema: str) -> None:
    """Set the connection's ``search_path`` to ``schema`` (see :func:`search_path_of`).

    Meant as (part of) a pool's ``configure`` callback. On a connection that is not in
    autocommit mode the change is committed, so a later rollback does not undo it.
    """
    conn.execute(SET_SEARCH_PATH, (search_path_of(schema), False))
    if not conn.autocommit:
        conn.commit()


#: ``(search_path value, is_local)``
SET_SEARCH_PATH = "SELECT set_config('search_path', %s, %s)"
