"""Waiting for an observable condition with a deadline (never a blind sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import durable


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what or predicate}")
        time.sleep(0.02)


def wait_status(app: durable.App, run_id: str, status: str, timeout: float = 20.0) -> None:
    """Wait until the run exists and has ``status``."""

    def reached() -> bool:
        try:
            return app.get_run(run_id).status == status
        except durable.RunNotFound:
            return False

    wait_for(reached, timeout, f"{run_id} {status}")
