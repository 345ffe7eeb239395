"""The first connection's failures say what to check (no database needed)."""

from __future__ import annotations

import psycopg

from durable.store._db import _connect_error


def test_a_wrong_password_says_authentication_failed() -> None:
    exc = psycopg.OperationalError(
        'connection failed: FATAL:  password authentication failed for user "app"'
    )
    message = str(_connect_error(exc))
    assert "authentication failed" in message and "password in the DSN" in message
    assert "cannot reach" not in message


def test_an_unknown_database_says_which_names_to_check() -> None:
    exc = psycopg.OperationalError('connection failed: FATAL:  database "nope" does not exist')
    assert "check the database and user names" in str(_connect_error(exc))


def test_an_unreachable_server_says_so() -> None:
    exc = psycopg.OperationalError("connection failed: Connection refused")
    assert str(_connect_error(exc)).startswith("cannot reach PostgreSQL")
