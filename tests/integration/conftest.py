"""Fixtures for runtime tests: an App on the test's own database, and a worker factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import durable


@pytest.fixture
def app(dsn: str) -> Iterator[durable.App]:
    application = durable.App(dsn)
    yield application
    application.close()


@pytest.fixture
def pickle_app(dsn: str) -> Iterator[durable.App]:
    application = durable.App(dsn, codec="pickle")
    yield application
    application.close()


@pytest.fixture
def env(app: durable.App, dsn: str) -> Iterator[Any]:
    """The testing kit's ``TestEnv`` on the test's own database: a worker and a virtual
    clock, so timers and timeouts of days take no real time."""
    from durable.testing import TestEnv

    with TestEnv(app, dsn=dsn, concurrency=4, lease_seconds=5.0, poll_interval=0.2) as test_env:
        yield test_env


WorkerFactory = Callable[..., Any]


@pytest.fixture
def worker() -> Callable[..., Any]:
    """``with worker(app): ...`` runs a fast-polling worker for the block."""

    @contextmanager
    def make(application: durable.App, **options: Any) -> Iterator[durable.Worker]:
        options.setdefault("concurrency", 4)
        options.setdefault("lease_seconds", 5.0)
        options.setdefault("poll_interval", 0.2)
        with application.worker(**options) as w:
            yield w

    return make
