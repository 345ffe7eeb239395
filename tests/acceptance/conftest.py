"""Fixtures of the crash-recovery acceptance tests.

This directory goes on ``sys.path`` so the tests import ``crash_app`` (the workflows the
worker subprocesses run) and ``acceptance_helpers`` under the same names the subprocesses
use.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from acceptance_helpers import WorkerFleet  # noqa: E402


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[Callable[..., WorkerFleet]]:
    """``make_fleet(dsn, concurrency=4)`` describes worker subprocesses on ``dsn`` whose
    logs go to ``tmp_path``; every one still running is SIGKILLed when the test ends."""
    fleets: list[WorkerFleet] = []

    def make(dsn: str, **options: Any) -> WorkerFleet:
        fleet = WorkerFleet(dsn, tmp_path, **options)
        fleets.append(fleet)
        return fleet

    try:
        yield make
    finally:
        for fleet in fleets:
            fleet.stop_all()
