"""pgdurable's pytest plugin (registered through the ``pytest11`` entry point).

``durable_env``: a :class:`durable.testing.TestEnv` around your ``app`` fixture (the
``durable.App`` your workflows are registered on), for the test's duration. Options go
through a marker: ``@pytest.mark.durable_env(auto_skip=False, concurrency=2)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "durable_env(**options): options of the durable_env fixture's TestEnv "
        "(auto_skip, concurrency, lease_seconds, ...)",
    )


@pytest.fixture
def durable_env(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A running ``TestEnv(app)`` for the ``app`` fixture: fresh schema, a worker, a
    virtual clock; dropped after the test."""
    from . import TestEnv  # imported on use: collecting tests imports nothing of ours

    try:
        app = request.getfixturevalue("app")
    except pytest.FixtureLookupError:
        pytest.fail(
            "durable_env needs a fixture named `app` that returns your durable.App; "
            "define one in conftest.py",
            pytrace=False,
        )
    marker = request.node.get_closest_marker("durable_env")
    options = dict(marker.kwargs) if marker is not None else {}
    with TestEnv(app, **options) as env:
        yield env
